"""The worker's pages on its web port: `/metrics`, `/health` (alive), `/ready`, and `/customers/{id}`, which
whichever worker owns the customer's partition answers (Faust's table routing forwards the request there)."""

from __future__ import annotations

from typing import Any, Protocol

import aiohttp
import faust
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import TypeAdapter, ValidationError

from engine.errors import NotOwnedHere
from engine.loyalty import CustomerState, Policy
from engine.loyalty.view import view
from schemas.events import Id


class Customers(Protocol):
    """What the pages need of the worker (the `Processor`): a customer's state where owned, the partitions owned,
    the table's name (Faust routes a key to its partition's owner) and the policy (the view explains with it)."""

    policy: Policy

    @property
    def table_name(self) -> str: ...

    def customer(self, customer_id: str) -> CustomerState | None: ...

    def owned_partitions(self) -> list[int]: ...


CUSTOMER_ID: TypeAdapter[str] = TypeAdapter(Id)
FORWARD_TIMEOUT = aiohttp.ClientTimeout(total=10)
FORWARDED = "X-Escalera-Forwarded"  # set on a query forwarded to the owner: it answers, never forwards again


def readiness(app: faust.App, customers: Customers) -> dict[str, bool]:
    """Ready: the tables are restored from their changelogs, no rebalance is under way, partitions are owned."""
    return {
        "tables_restored": bool(app.tables.recovery.completed.is_set()),  # type: ignore[attr-defined]
        "not_rebalancing": not app.rebalancing,
        "owns_partitions": bool(customers.owned_partitions()),
    }


def serve_pages(app: faust.App, customers: Customers, registry: CollectorRegistry) -> None:
    """Add the operators' pages to the worker's web server."""

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        return web.json({"status": "alive"})

    @app.page("/ready")
    async def ready(web: Any, request: Any) -> Any:
        checks = readiness(app, customers)
        ready = all(checks.values())
        return web.json({"ready": ready, **checks}, status=200 if ready else 503)

    @app.page("/customers/{customer_id}")
    async def customer(web: Any, request: Any, customer_id: str) -> Any:
        try:
            CUSTOMER_ID.validate_python(customer_id)
        except ValidationError:
            return web.json({"error": "malformed customer id: 1-128 printable characters"}, status=400)
        if FORWARDED not in request.headers:
            try:
                owner = app.router.key_store(customers.table_name, customer_id.encode())
            except KeyError:  # the partition has no owner in the current assignment: a rebalance is under way
                return web.json({"error": "no worker owns this customer's partition yet; ask again"}, status=503)
            here = app.conf.canonical_url
            if (owner.host, owner.port) != (here.host, here.port):
                return await forward(app, web, request.url.with_host(owner.host).with_port(owner.port))
        return answer(app, web, customers, customer_id)


def answer(app: faust.App, web: Any, customers: Customers, customer_id: str) -> Any:
    """The owner's answer: the customer's view, 404 if unknown, 503 while its partition is not ready here."""
    if not readiness(app, customers)["tables_restored"]:
        return web.json({"error": "the customer table is being restored; ask again shortly"}, status=503)
    try:
        state = customers.customer(customer_id)
    except NotOwnedHere as exc:
        return web.json({"error": f"{exc}; ask again shortly"}, status=503)
    if state is None:
        return web.json({"error": f"no customer {customer_id!r}"}, status=404)
    return web.json({**view(state, customers.policy), "answered_by": str(app.conf.canonical_url)})


async def forward(app: faust.App, web: Any, url: Any) -> Any:
    """Ask the owning worker (marked as forwarded, so two workers that disagree during a rebalance never
    bounce a query between them) and hand back its answer as it is."""
    try:
        async with app.http_client.get(url, headers={FORWARDED: "1"}, timeout=FORWARD_TIMEOUT) as response:
            body = await response.read()
            return web.bytes(body, content_type=response.content_type, status=response.status)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return web.json({"error": f"the worker owning this customer ({url.host}:{url.port}) did not answer: {exc!r}"},
                        status=503)  # fmt: skip
