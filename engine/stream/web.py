"""The worker's pages on its web port: `/metrics`, `/health` (alive), `/ready`, `/customers/{id}`, which whichever
worker owns the customer's partition answers (Faust's table routing forwards the request there), and `/audiences`,
the customers matching filters, which the worker asked answers with every worker owning partitions of the table
(issue 20).

With `ESCALERA_API_TOKEN` set, `/customers/…` and `/audiences` ask for it as a bearer token; `/metrics`, `/health`
and `/ready` stay open for Prometheus and orchestrators."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import aiohttp
import faust
import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import SecretStr, TypeAdapter, ValidationError
from yarl import URL

from engine.errors import NotOwnedHere
from engine.loyalty import CustomerState, Policy
from engine.loyalty.audience import (
    Audience,
    AudienceError,
    Page,
    decode_cursor,
    encode_cursor,
    merge_pages,
    page_of,
    parse_audience,
    parse_limit,
)
from engine.loyalty.view import view
from engine.settings import Settings
from schemas.events import Id


class Customers(Protocol):
    """What the pages need of the worker (the `Processor`): a customer's state where owned, the partitions owned,
    the table's name (Faust routes a key to its partition's owner) and the policy (the view explains with it)."""

    policy: Policy
    settings: Settings

    @property
    def table_name(self) -> str: ...

    def customer(self, customer_id: str) -> CustomerState | None: ...

    def owned_partitions(self) -> list[int]: ...

    def customers_of(self, partitions: list[int], after: str | None = None) -> list[str]: ...


CUSTOMER_ID: TypeAdapter[str] = TypeAdapter(Id)
FORWARD_TIMEOUT = aiohttp.ClientTimeout(total=10)
FORWARDED = "X-Escalera-Forwarded"  # set on a query forwarded to the owner: it answers, never forwards again
PAGING = ("limit", "cursor", "partitions")  # the query parameters of /audiences that are not filters
SCAN_CHUNK = 500  # states read for /audiences between two turns given back to the event loop (the stream goes on)


def readiness(app: faust.App, customers: Customers) -> dict[str, bool]:
    """Ready: the tables are restored from their changelogs, no rebalance is under way, partitions are owned."""
    return {
        "tables_restored": bool(app.tables.recovery.completed.is_set()),  # type: ignore[attr-defined]
        "not_rebalancing": not app.rebalancing,
        "owns_partitions": bool(customers.owned_partitions()),
    }


def serve_pages(
    app: faust.App, customers: Customers, registry: CollectorRegistry, token: SecretStr | None = None
) -> None:
    """Add the operators' pages to the worker's web server (`token`: the query API's bearer token, if any)."""

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
        if (refused := refuse(web, request, token)) is not None:
            return refused
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
                return await forward(app, web, request.url.with_host(owner.host).with_port(owner.port), token)
        return answer(app, web, customers, customer_id)

    @app.page("/audiences")
    async def audiences(web: Any, request: Any) -> Any:
        if (refused := refuse(web, request, token)) is not None:
            return refused
        query = request.query
        try:
            audience = parse_audience({name: query.getall(name) for name in query if name not in PAGING}, prefix="")
            limit = parse_limit(query.get("limit"))
            after = decode_cursor(query.get("cursor"))
            partitions = _partitions(query.get("partitions"), customers.settings.topic_partitions)
        except AudienceError as error:
            return web.json({"error": str(error)}, status=400)
        if FORWARDED in request.headers:  # asked by the worker fanning out: its own partitions only
            try:
                page = await local_page(app, customers, audience, partitions or customers.owned_partitions(), after,
                                        limit)  # fmt: skip
            except NotOwnedHere as exc:
                return web.json({"error": f"{exc}; ask again shortly"}, status=503)
            following = encode_cursor(str(page.customers[-1]["customer_id"])) if page.more else None
            return web.json({"customers": page.customers, "next": following})
        return await fan_out(app, web, customers, audience, after, limit, token)


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


async def forward(app: faust.App, web: Any, url: Any, token: SecretStr | None = None) -> Any:
    """Ask the owning worker (marked as forwarded, so two workers that disagree during a rebalance never
    bounce a query between them, and with the API token) and hand back its answer as it is."""
    try:
        async with app.http_client.get(url, headers=forwarded(token), timeout=FORWARD_TIMEOUT) as response:
            body = await response.read()
            return web.bytes(body, content_type=response.content_type, status=response.status)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return web.json({"error": f"the worker owning this customer ({url.host}:{url.port}) did not answer: {exc!r}"},
                        status=503)  # fmt: skip


# ---- the API token ---------------------------------------------------------------------------------------------


def authorized(request: Any, token: SecretStr | None) -> bool:
    """Whether a request may use the query API: no token set, or `Authorization: Bearer <token>`. Compared in
    constant time, as digests of equal length (`hmac.compare_digest` would tell a wrong length sooner)."""
    if token is None:
        return True
    scheme, _, given = str(request.headers.get("Authorization", "")).strip().partition(" ")
    expected = hashlib.sha256(token.get_secret_value().encode()).digest()
    presented = hashlib.sha256(given.strip().encode(errors="replace")).digest()
    return hmac.compare_digest(presented, expected) and scheme.lower() == "bearer"


def refuse(web: Any, request: Any, token: SecretStr | None) -> Any | None:
    """The 401 answer to a request without the token (RFC 6750's challenge), or None when it may go on. Neither the
    token nor what was presented is logged or echoed."""
    if authorized(request, token):
        return None
    challenge = 'Bearer realm="escalera"'
    if "Authorization" in request.headers:
        challenge += ', error="invalid_token"'
    return web.json(
        {"error": "this query needs the API token: Authorization: Bearer <ESCALERA_API_TOKEN>"},
        status=401,
        headers={"WWW-Authenticate": challenge},
    )


def forwarded(token: SecretStr | None) -> dict[str, str]:
    """The headers of a query one worker asks another: marked as forwarded, with the API token if there is one."""
    headers = {FORWARDED: "1"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token.get_secret_value()}"
    return headers


# ---- audiences ---------------------------------------------------------------------------------------------------


def _partitions(raw: str | None, count: int) -> list[int] | None:
    """The partitions a forwarded /audiences query asks a worker to answer for (None: every one it owns)."""
    if raw is None:
        return None
    parts = raw.split(",")
    if not all(part.isdigit() and int(part) < count for part in parts):
        raise AudienceError(f"partitions: partition numbers from 0 to {count - 1}, comma-separated (got {raw!r})")
    return sorted({int(part) for part in parts})


async def local_page(
    app: faust.App, customers: Customers, audience: Audience, partitions: list[int], after: str | None, limit: int
) -> Page:
    """This worker's answer for `partitions`: the first `limit` customers after `after` whom the audience admits, as
    views. States are read one by one, and the event loop gets a turn every SCAN_CHUNK reads, so a rare audience
    over a large table does not stop the stream meanwhile. NotOwnedHere if a partition is not (or no longer) owned
    here, or the table is being restored."""
    if not readiness(app, customers)["tables_restored"]:
        raise NotOwnedHere("the customer table is being restored")
    ids = customers.customers_of(partitions, after)
    here = str(app.conf.canonical_url)
    found: list[Mapping[str, Any]] = []
    for read, customer_id in enumerate(ids, start=1):
        state = customers.customer(customer_id)  # NotOwnedHere if its partition moved meanwhile
        if state is not None and audience.admits_state(state):
            found.append({**view(state, customers.policy), "answered_by": here})
            if len(found) > limit:
                break
        if read % SCAN_CHUNK == 0:
            await asyncio.sleep(0)
    owned = set(customers.owned_partitions())
    if not owned.issuperset(partitions):  # given away while reading (then its last states may be stale here)
        raise NotOwnedHere(f"partitions {sorted(set(partitions) - owned)} changed hands while read")
    return page_of(found, limit)


def owners(app: faust.App, customers: Customers) -> dict[str, list[int]] | None:
    """The workers owning partitions of the customer table and theirs, by worker URL, from the assignment Faust's
    router knows (`Router.table_metadata`); None while a partition has no owner (a rebalance is under way)."""
    shares: dict[str, list[int]] = {}
    for url, topics in app.router.table_metadata(customers.table_name).items():
        partitions = sorted({p for assigned in topics.values() for p in assigned})
        if partitions:
            shares[str(url)] = partitions
    covered = {p for partitions in shares.values() for p in partitions}
    return shares if covered == set(range(customers.settings.topic_partitions)) else None


class _Unanswered(Exception):
    """A worker asked for its part of an audience gave no page: the status to answer with, and why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


async def fan_out(
    app: faust.App,
    web: Any,
    customers: Customers,
    audience: Audience,
    after: str | None,
    limit: int,
    token: SecretStr | None,
) -> Any:
    """/audiences as asked of any worker: each worker owning partitions of the table answers for its own (this one
    without a request), and their pages are merged by customer id. 503 while a partition has no owner, or when a
    worker does not answer its part."""
    shares = owners(app, customers)
    if shares is None:
        return web.json({"error": "a partition of the customer table has no owner yet (a rebalance); ask again"},
                        status=503)  # fmt: skip
    here = app.conf.canonical_url

    async def ask(url: str, partitions: list[int]) -> Page:
        where = URL(url)
        if (where.host, where.port) == (here.host, here.port):
            try:
                return await local_page(app, customers, audience, partitions, after, limit)
            except NotOwnedHere as exc:
                raise _Unanswered(503, f"{exc}; ask again shortly") from None
        params = [*audience.query(), ("limit", str(limit)), ("partitions", ",".join(map(str, partitions)))]
        if after is not None:
            params.append(("cursor", encode_cursor(after)))
        return await _ask_worker(app, where.with_path("/audiences").with_query(params), token)

    try:
        pages = await asyncio.gather(*(ask(url, partitions) for url, partitions in sorted(shares.items())))
    except _Unanswered as failed:
        return web.json({"error": str(failed)}, status=failed.status)
    merged, following = merge_pages(pages, limit)
    return web.json({"customers": merged, "next": following, "answered_by": sorted(shares)})


async def _ask_worker(app: faust.App, url: URL, token: SecretStr | None) -> Page:
    """Another worker's page for its partitions (a forwarded query: it never fans out again)."""
    try:
        async with app.http_client.get(url, headers=forwarded(token), timeout=FORWARD_TIMEOUT) as response:
            body = await response.read()
            status = response.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise _Unanswered(503, f"the worker at {url.host}:{url.port} did not answer: {exc!r}") from None
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        answer = {}
    if status != 200 or not isinstance(answer, dict) or not isinstance(answer.get("customers"), list):
        reason = answer.get("error") if isinstance(answer, dict) else None
        raise _Unanswered(503 if status in (200, 503) else 502,
                          f"the worker at {url.host}:{url.port} answered {status}: {reason or 'no page'}")  # fmt: skip
    return Page(list(_views(answer["customers"])), answer.get("next") is not None)


def _views(found: Iterable[Any]) -> Iterable[Mapping[str, Any]]:
    return (customer for customer in found if isinstance(customer, dict) and "customer_id" in customer)
