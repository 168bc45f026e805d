"""The one place that turns the connection settings into options for every Kafka client."""

from __future__ import annotations

from typing import Any

from engine.broker.check import connection_options
from engine.settings import Settings


def aiokafka_options(settings: Settings) -> dict[str, Any]:
    """Connection options for a plain aiokafka client (same broker and credentials as the app)."""
    return {"bootstrap_servers": list(settings.bootstrap_servers), **connection_options(settings)}
