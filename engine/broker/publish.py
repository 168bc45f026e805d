"""Publish a JSON-lines event file to Escalera's inbound topics, each event keyed by its customer_id."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from engine.broker.connection import kafka_python_options
from engine.errors import EscaleraError
from engine.settings import Settings


class PublishError(EscaleraError):
    """Some records could not be written to Kafka."""


@dataclass(frozen=True)
class Route:
    """Where one line goes."""

    topic: str
    key: bytes | None


@dataclass
class PublishReport:
    """What was sent where, and what failed."""

    sent: Counter[str] = field(default_factory=Counter)
    unkeyed: int = 0
    failed: int = 0
    first_error: str | None = None
    seconds: float = 0.0

    @property
    def total(self) -> int:
        """Records sent."""
        return sum(self.sent.values())


def route(line: bytes, settings: Settings) -> Route:
    """An event goes to the topic of its type (purchase.* → purchases, feedback.* → feedback, else customers).

    Lines that are not readable events are still published (unkeyed, to the customers topic), so the
    engine dead-letters them with a reason instead of this tool dropping them silently.
    """
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError:
        return Route(settings.topic_customers, None)
    if not isinstance(event, dict):
        return Route(settings.topic_customers, None)
    kind, customer = event.get("type"), event.get("customer_id")
    key = customer.encode() if isinstance(customer, str) and customer else None
    if isinstance(kind, str) and kind.startswith("purchase."):
        return Route(settings.topic_purchases, key)
    if isinstance(kind, str) and kind.startswith("feedback."):
        return Route(settings.topic_feedback, key)
    return Route(settings.topic_customers, key)


def publish(
    lines: Iterator[bytes],
    settings: Settings,
    *,
    rate: float = 0.0,
    on_sent: Callable[[int], None] | None = None,
) -> PublishReport:
    """Produce every line (acks=all, idempotent); `rate` > 0 paces it to that many records a second."""
    from kafka import KafkaProducer

    report = PublishReport()
    producer = KafkaProducer(
        client_id=f"{settings.app_id}-publish",
        acks="all",
        enable_idempotence=True,
        linger_ms=10,
        batch_size=256 * 1024,
        **kafka_python_options(settings),
    )

    def failed(error: Exception) -> None:
        report.failed += 1
        report.first_error = report.first_error or repr(error)

    began = time.monotonic()
    try:
        for count, line in enumerate(lines, start=1):
            where = route(line, settings)
            future: Any = producer.send(where.topic, key=where.key, value=line)
            future.add_errback(failed)
            report.sent[where.topic] += 1
            report.unkeyed += where.key is None
            if rate > 0:
                ahead = began + count / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            if on_sent is not None:
                on_sent(1)
        producer.flush()
    finally:
        producer.close()
    report.seconds = time.monotonic() - began
    if report.failed:
        raise PublishError(f"{report.failed} of {report.total} records were not written: {report.first_error}")
    return report
