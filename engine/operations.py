"""The worker's pages for operators, on its web port: `/metrics`, `/health` (alive) and `/ready`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import faust
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

if TYPE_CHECKING:
    from engine.worker import Engine


def readiness(app: faust.App, engine: Engine) -> dict[str, bool]:
    """Ready: the tables are restored from their changelogs, no rebalance is under way, partitions are owned."""
    return {
        "tables_restored": bool(app.tables.recovery.completed.is_set()),  # type: ignore[attr-defined]
        "not_rebalancing": not app.rebalancing,
        "owns_partitions": bool(engine.owned_partitions()),
    }


def serve_operations(app: faust.App, engine: Engine, registry: CollectorRegistry) -> None:
    """Add the operators' pages to the worker's web server."""

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        return web.json({"status": "alive"})

    @app.page("/ready")
    async def ready(web: Any, request: Any) -> Any:
        checks = readiness(app, engine)
        ready = all(checks.values())
        return web.json({"ready": ready, **checks}, status=200 if ready else 503)
