"""What `escalera bootstrap` needs of Kafka: the checks before it writes anything, and the writes themselves — the
customer table's changelog (each state on the partition its worker restores it from), the partition-stats records,
and the decisions published at the cutover (issue 17).

Why the changelog and not the inbound topics: a worker restores its table from the changelog at start, as after any
restart, so a history folded offline reaches the workers as the states a worker that streamed it would have left,
at the speed of a producer rather than of the stream (and none of its historic decisions reach marketing).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from engine.broker.connection import kafka_python_options
from engine.broker.partitioner import partition_of
from engine.broker.table_keys import ledger_key
from engine.errors import EscaleraError
from engine.settings import Settings

DELETE_WAIT_SECONDS = 30.0


class BootstrapRefused(EscaleraError):
    """Bootstrap will not write: live workers, a table that is not empty, a history out of order, another policy."""


@dataclass(frozen=True)
class Occupied:
    """What the worker group's topics already hold (records ever written per topic: end offsets summed)."""

    records: dict[str, int]

    @property
    def empty(self) -> bool:
        """Nothing was ever written to them."""
        return not any(self.records.values())


def _admin(settings: Settings) -> Any:
    from kafka.admin import KafkaAdminClient

    return KafkaAdminClient(client_id=f"{settings.app_id}-bootstrap", **kafka_python_options(settings))


def live_members(settings: Settings, timeout: float = 20.0) -> int:
    """Members of the worker group right now (a worker running, or one not yet timed out after a crash). A fresh
    broker answers "coordinator not available" while it creates its offsets topic: asked again until `timeout`."""
    from kafka.errors import CoordinatorNotAvailableError, NotCoordinatorError

    admin = _admin(settings)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                described = admin.describe_groups([settings.app_id])
                break
            except (CoordinatorNotAvailableError, NotCoordinatorError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        admin.close()
    group = described.get(settings.app_id) or {}
    return len(group.get("members") or [])


def seeded_topics(settings: Settings) -> list[str]:
    """The topics bootstrap writes (and `--replace` empties): the table's changelog and the partition statistics."""
    return [settings.changelog_topic, settings.partition_stats_topic]


def occupied(settings: Settings) -> Occupied:
    """How many records were ever written to the topics bootstrap seeds (end offsets, summed over partitions)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(enable_auto_commit=False, **kafka_python_options(settings))
    try:
        counts: dict[str, int] = {}
        for topic in seeded_topics(settings):
            partitions = consumer.partitions_for_topic(topic) or set()
            ends = consumer.end_offsets([TopicPartition(topic, p) for p in partitions]) if partitions else {}
            counts[topic] = sum(ends.values())
        return Occupied(counts)
    finally:
        consumer.close()


def delete_seeded(settings: Settings) -> None:
    """Delete the changelog and partition-stats topics (`--replace`); the caller creates them again, empty."""
    from kafka.errors import UnknownTopicOrPartitionError

    admin = _admin(settings)
    names = seeded_topics(settings)
    try:
        with contextlib.suppress(UnknownTopicOrPartitionError):  # one was missing: the others are deleted
            admin.delete_topics(names)
        deadline = time.monotonic() + DELETE_WAIT_SECONDS
        while set(names) & set(admin.list_topics()):
            if time.monotonic() > deadline:
                raise BootstrapRefused(f"the broker did not delete {', '.join(names)} in {DELETE_WAIT_SECONDS:.0f} s")
            time.sleep(0.2)
    finally:
        admin.close()


class SeedWriter:
    """One idempotent producer for every record bootstrap writes (acks=all, large batches: the states are most of
    the bytes, and the writes must not dominate the fold — issue 17's 1.3× of the replay)."""

    def __init__(self, settings: Settings) -> None:
        from kafka import KafkaProducer

        self.settings = settings
        self.producer = KafkaProducer(
            client_id=f"{settings.app_id}-bootstrap",
            acks="all",
            enable_idempotence=True,
            linger_ms=20,
            batch_size=1024 * 1024,
            max_request_size=8 * 1024 * 1024,
            **kafka_python_options(settings),
        )
        self.sent = 0
        self.failed = 0
        self.first_error: str | None = None

    def _errback(self, error: Exception) -> None:
        self.failed += 1
        self.first_error = self.first_error or repr(error)

    def state(self, customer_id: str, value: bytes) -> None:
        """A customer's state into the changelog, on the partition of their id: where the worker owning the
        customer's inbound partition restores it from (Faust writes a table change to the changelog partition of
        the record being processed, which for a record keyed by its customer is Kafka's default partition)."""
        key = customer_id.encode()
        partition = partition_of(key, self.settings.topic_partitions)
        self._send(self.settings.changelog_topic, key, value, partition)

    def ledger(self, partition: int, value: bytes) -> None:
        """A partition's perk budget ledger (`PartitionLedger.to_json`) into the changelog, on that partition under
        its ledger key: where the worker owning the partition restores it from (engine/broker/table_keys.py)."""
        self._send(self.settings.changelog_topic, ledger_key(partition), value, partition)

    def stats(self, records: Iterable[tuple[bytes, bytes]]) -> None:
        """Records of the partition-stats topic (keyed as the workers key them)."""
        for key, value in records:
            self._send(self.settings.partition_stats_topic, key, value, None)

    def decision(self, topic: str, customer_id: str, value: bytes) -> None:
        """A decision at or after the cutover, keyed by its customer as a worker publishes it."""
        self._send(topic, customer_id.encode(), value, None)

    def _send(self, topic: str, key: bytes, value: bytes, partition: int | None) -> None:
        self.producer.send(topic, key=key, value=value, partition=partition).add_errback(self._errback)
        self.sent += 1

    def close(self) -> None:
        """Deliver everything; an undelivered record is an error, not a silent loss."""
        try:
            self.producer.flush()
        finally:
            self.producer.close()
        if self.failed:
            raise EscaleraError(f"{self.failed} of {self.sent} records were not written: {self.first_error}")
