"""Escalera's Kafka topics: which exist, with how many partitions, created on purpose and checked."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from engine.broker.connection import kafka_python_options
from engine.errors import EscaleraError
from engine.settings import Settings

WEEK_MS = 7 * 24 * 3600 * 1000


class TopicMismatchError(EscaleraError):
    """A topic exists with a layout Escalera cannot work with (e.g. another partition count)."""


@dataclass(frozen=True)
class TopicSpec:
    """A topic as Escalera wants it."""

    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)


def changelog_config(settings: Settings) -> dict[str, str]:
    """The customer table's changelog settings that bound how long an erased customer's states stay in Kafka.

    The table writes a tombstone for an erased customer; Kafka's log cleaner then removes the customer's earlier
    states within this delay (`max.compaction.lag.ms`), and keeps the tombstone as long (`delete.retention.ms`: long
    enough for a restoring worker to read it). Used for the topic created here and by the Faust table alike.
    """
    delay_ms = str(settings.erasure_max_delay_seconds * 1000)
    return {"max.compaction.lag.ms": delay_ms, "delete.retention.ms": delay_ms}


def loyalty_topics(settings: Settings) -> list[TopicSpec]:
    """The inbound and outbound topics; all share one partition count so customers stay co-partitioned."""

    def spec(name: str, **config: str) -> TopicSpec:
        return TopicSpec(name, settings.topic_partitions, settings.topic_replication_factor, config)

    return [
        spec(settings.topic_purchases),
        spec(settings.topic_feedback),
        spec(settings.topic_customers),
        spec(settings.topic_perks),
        spec(settings.topic_transitions),
        # Dead letters wait for a person: keep them four weeks.
        spec(settings.topic_dlq, **{"retention.ms": str(4 * WEEK_MS)}),
        # The worker's own: referral credits must reach the referrer's partition, so the same count.
        spec(settings.internal_topic),
        spec(settings.partition_stats_topic, **{"cleanup.policy": "compact"}),
        # The customer table's changelog (Faust would create it at start-up, but without these settings if a
        # worker started before `escalera topics`): erased customers leave it within a bounded delay.
        spec(settings.changelog_topic, **{"cleanup.policy": "compact", **changelog_config(settings)}),
    ]


def ensure_topics(settings: Settings, specs: list[TopicSpec] | None = None) -> list[str]:
    """Create the topics that are missing; return their names. An existing topic must match its spec."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    specs = loyalty_topics(settings) if specs is None else specs
    admin = KafkaAdminClient(client_id=f"{settings.app_id}-admin", **kafka_python_options(settings))
    try:
        existing = set(admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        if missing:
            new = [NewTopic(s.name, s.partitions, s.replication_factor, topic_configs=s.config) for s in missing]
            with contextlib.suppress(TopicAlreadyExistsError):  # another process (or stale metadata)
                admin.create_topics(new)
        _check_partitions(admin, specs)
        return [s.name for s in missing]
    finally:
        admin.close()


def _check_partitions(admin: Any, specs: list[TopicSpec], timeout: float = 10.0) -> None:
    """Every topic exists with its spec's partition count (new topics may take a moment to be described)."""
    deadline = time.monotonic() + timeout
    while True:
        described = {t["name"]: len(t["partitions"]) for t in admin.describe_topics([s.name for s in specs])}
        if all(described.get(s.name) for s in specs) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for spec in specs:
        found = described.get(spec.name)
        if not found:
            raise TopicMismatchError(f"topic {spec.name!r} was created but is not visible to the broker's metadata")
        if found != spec.partitions:
            raise TopicMismatchError(
                f"topic {spec.name!r} has {found} partitions but ESCALERA_TOPIC_PARTITIONS is "
                f"{spec.partitions}: every Escalera topic needs the same count so a customer's events "
                "meet in one partition; set the variable to match"
            )
