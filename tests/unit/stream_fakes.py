"""Small fakes of what the stream processor needs of Faust and Kafka (`engine.stream.ports`), and a harness that
wires one `Processor` to them, as cosmicpython drives its handlers with a fake unit of work.

The fakes keep what the tests observe: what was sent to each topic, every table write with the current event it
was made under, the acknowledged offsets, and one log of sends, flushes, writes and acknowledgements in order.
The table follows Faust's over RocksDB: one store per partition, reads and writes going to the partition of the
current event, which (as in Faust) is a context variable set by `_set_current_event` only, not by assigning the
stream's `current_event` attribute; outside a batch (no current event) a read searches every partition.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import orjson
from faust.types import TP
from prometheus_client import CollectorRegistry

from engine.broker.partitioner import partition_of
from engine.broker.table_keys import policy_key
from engine.loyalty import DEFAULT_POLICY, CustomerState, Policy
from engine.settings import Settings, load_settings
from engine.stream import records
from engine.stream.metrics import WorkerMetrics
from engine.stream.processor import Processor

# Faust's `faust.streams._current_event`: table accesses follow it, whatever the stream's attribute says
_current_event: ContextVar[Any] = ContextVar("fake_current_event", default=None)


@dataclass(frozen=True)
class FakeMessage:
    """A Kafka record's place."""

    topic: str
    partition: int
    offset: int
    timestamp: float = field(default_factory=lambda: time.time())  # when it was published (seconds), as now

    @property
    def tp(self) -> TP:
        return TP(self.topic, self.partition)


@dataclass(eq=False)
class FakeRecord:
    """A Faust event: its message, key and value (compared by identity, as Faust's events are)."""

    message: FakeMessage
    key: bytes | None
    value: bytes

    def __repr__(self) -> str:
        m = self.message
        return f"<{m.topic}/{m.partition}@{m.offset}>"


@dataclass(frozen=True)
class Sent:
    """A record queued for the producer."""

    key: bytes | None
    value: bytes
    partition: int | None


class FakeTopic:
    """A topic the processor sends to: records what `send_soon` queued."""

    def __init__(self, name: str, calls: list[str], journal: list[tuple[str, Sent]]) -> None:
        self.name, self.calls, self.journal = name, calls, journal
        self.sent: list[Sent] = []

    def send_soon(self, *, key: bytes | None = None, value: bytes | None = None, partition: int | None = None) -> Any:
        assert value is not None
        sent = Sent(key, value, partition)
        self.sent.append(sent)
        self.journal.append((self.name, sent))
        self.calls.append(f"send {self.name}")

    def get_topic_name(self) -> str:
        return self.name

    def values(self) -> list[dict[str, Any]]:
        """The JSON records sent, decoded."""
        return [orjson.loads(sent.value) for sent in self.sent]


@dataclass(frozen=True)
class Write:
    """A table write (value None: a deletion) and the current event it was made under."""

    key: bytes
    value: bytes | None
    event: Any


class FakeTable:
    """Faust's table over RocksDB, as far as the processor sees it: one store per partition."""

    def __init__(self, calls: list[str], partitions: int, name: str = "customers") -> None:
        self.calls, self.partitions, self._name = calls, partitions, name
        self.parts: dict[int, dict[bytes, bytes]] = {}
        self.writes: list[Write] = []

    @property
    def name(self) -> str:
        return self._name

    def _partition(self) -> int:
        event = _current_event.get()
        assert event is not None, "a table write outside of a current event (Faust raises)"
        return int(event.message.partition)

    def get(self, key: bytes) -> bytes | None:
        event = _current_event.get()
        if event is not None:
            return self.parts.get(event.message.partition, {}).get(key)
        return next((part[key] for part in self.parts.values() if key in part), None)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.writes.append(Write(key, value, _current_event.get()))
        self.calls.append(f"write {key.decode()}")
        self.parts.setdefault(self._partition(), {})[key] = value

    def __delitem__(self, key: bytes) -> None:
        self.writes.append(Write(key, None, _current_event.get()))
        self.calls.append(f"delete {key.decode()}")
        self._partition()
        for part in self.parts.values():
            part.pop(key, None)

    def __contains__(self, key: object) -> bool:
        event = _current_event.get()
        if event is not None:
            return key in self.parts.get(event.message.partition, {})
        return any(key in part for part in self.parts.values())

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        for part in self.parts.values():
            yield from list(part.items())

    def state(self, customer_id: str) -> CustomerState | None:
        """A customer's state as stored, from the partition of their key (where Faust's owner reads it)."""
        raw = self.parts.get(partition_of(customer_id.encode(), self.partitions), {}).get(customer_id.encode())
        return None if raw is None else CustomerState.decode(raw)

    def put(self, state: CustomerState) -> None:
        """A state already in the table (restored from the changelog), on its customer's partition."""
        key = state.customer_id.encode()
        self.parts.setdefault(partition_of(key, self.partitions), {})[key] = state.encode()


@dataclass
class FakeChannels:
    """The app's topology: the topics the processor sends to, and its table."""

    perks: FakeTopic
    transitions: FakeTopic
    dead_letters: FakeTopic
    internal: FakeTopic
    partition_stats: FakeTopic
    customers: FakeTable


@dataclass
class FakeConsumer:
    """Faust's consumer: the assignment, high watermarks (unknown partitions hold 0 records), committed offsets."""

    owned: set[TP] = field(default_factory=set)
    highwaters: dict[TP, int | None] = field(default_factory=dict)
    _committed_offset: dict[TP, int] = field(default_factory=dict)
    seeks: list[tuple[TP, int]] = field(default_factory=list)
    gaps: list[tuple[TP, int, int]] = field(default_factory=list)
    skips: dict[TP, tuple[int, int]] = field(default_factory=dict)  # see `faust_fixes.isolation`: none by default

    def assignment(self) -> set[TP]:
        return set(self.owned)

    def highwater(self, tp: TP) -> int | None:
        return self.highwaters.get(tp, 0)

    def skipped(self, tp: TP) -> tuple[int, int] | None:
        return self.skips.get(tp)

    async def seek_wait(self, partitions: dict[TP, int]) -> None:
        self.seeks.extend(partitions.items())

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        self.gaps.append((tp, offset_from, offset_to))


class FakeProducer:
    """Faust's producer: `flush` logs itself and then runs `during_flush` (what Faust does while it awaits)."""

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls
        self.flushes = 0
        self.during_flush: Callable[[], None] | None = None

    async def flush(self) -> None:
        self.flushes += 1
        self.calls.append("flush")
        await asyncio.sleep(0)
        if self.during_flush is not None:
            self.during_flush()


class FakeStream:
    """The agent's stream: its current event and the records it acknowledged."""

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls
        self.current_event: Any = None
        self.acked: list[FakeRecord] = []

    def _set_current_event(self, event: Any = None) -> None:
        _current_event.set(event)
        self.current_event = event

    async def ack(self, event: Any) -> bool:
        self.acked.append(event)
        self.calls.append(f"ack {event!r}")
        return True

    def offsets(self, topic: str | None = None) -> list[tuple[str, int, int]]:
        """The acknowledged (topic, partition, offset), in order, of one topic or all."""
        return [
            (r.message.topic, r.message.partition, r.message.offset)
            for r in self.acked
            if topic is None or r.message.topic == topic
        ]


class Harness:
    """One processor over fakes, with the partitions it owns, and a feed of records at the next offsets."""

    def __init__(
        self,
        partitions: int = 1,
        owned: Iterable[int] | None = None,
        wall_clock_when_idle: bool = False,
        policy: Policy = DEFAULT_POLICY,
        arrival_grace: float = 0.0,
        switch_perks_per_second: float = 0.0,
    ) -> None:
        self.settings: Settings = load_settings(
            {
                "ESCALERA_TOPIC_PARTITIONS": str(partitions),
                "ESCALERA_WALL_CLOCK_WHEN_IDLE": str(wall_clock_when_idle).lower(),
                "ESCALERA_ARRIVAL_GRACE_SECONDS": str(arrival_grace),
                "ESCALERA_SWITCH_PERKS_PER_SECOND": str(switch_perks_per_second),
            }
        )
        self.partitions = partitions
        self.calls: list[str] = []  # sends, flushes, table writes and acknowledgements, in order
        self.journal: list[tuple[str, Sent]] = []  # every record sent, with its topic, in order
        s = self.settings
        self.table = FakeTable(self.calls, partitions)
        # The table as workers running this policy left it: each partition's customers evaluated under it (the policy
        # switch's tests start from another version: tests/unit/test_stream_switch.py).
        for partition in range(partitions):
            self.table.parts.setdefault(partition, {})[policy_key(partition)] = policy.version.encode()

        def topic(name: str) -> FakeTopic:
            return FakeTopic(name, self.calls, self.journal)

        self.channels = FakeChannels(
            perks=topic(s.topic_perks),
            transitions=topic(s.topic_transitions),
            dead_letters=topic(s.topic_dlq),
            internal=topic(s.internal_topic),
            partition_stats=topic(s.partition_stats_topic),
            customers=self.table,
        )
        self.consumer = FakeConsumer()
        self.producer = FakeProducer(self.calls)
        self.stream = FakeStream(self.calls)
        self.registry = CollectorRegistry()
        self.processor = Processor(
            s, policy, self.channels, self.consumer, self.producer, WorkerMetrics(self.registry, s.inbound_topics)
        )
        self.next_offset: dict[TP, int] = {}
        self.internal_read = 0  # internal records sent so far that were handed back with `internal_records`
        self.own(range(partitions) if owned is None else owned)

    # ---- the consumer's side ----

    def own(self, partitions: Iterable[int]) -> None:
        """Assign these partitions of the inbound topics and the internal topic."""
        topics = (*self.settings.inbound_topics, self.settings.internal_topic)
        self.consumer.owned = {TP(topic, p) for topic in topics for p in partitions}

    def partition_of(self, customer_id: str) -> int:
        return partition_of(customer_id.encode(), self.partitions)

    def record(self, topic: str, value: bytes, key: bytes | None, partition: int | None = None) -> FakeRecord:
        """The next record of a topic partition (by default the key's); the broker's end moves past it unless it
        was already further."""
        if partition is None:
            assert key is not None
            partition = partition_of(key, self.partitions)
        tp = TP(topic, partition)
        offset = self.next_offset.get(tp, 0)
        self.next_offset[tp] = offset + 1
        highwater = self.consumer.highwaters.get(tp)
        self.consumer.highwaters[tp] = max(offset + 1, highwater or 0)
        return FakeRecord(FakeMessage(topic, partition, offset), key, value)

    def event(self, topic: str, event: Any, key: bytes | None = None, partition: int | None = None) -> FakeRecord:
        """An inbound event's record, keyed by its customer unless `key` says otherwise."""
        key = event.customer_id.encode() if key is None else key
        return self.record(topic, event.model_dump_json().encode(), key, partition)

    def internal(self, internal: records.InternalRecord, partition: int, key: bytes | None = None) -> FakeRecord:
        """A record of the internal topic."""
        return self.record(self.settings.internal_topic, records.encode(internal), key, partition)

    def internal_records(self) -> list[FakeRecord]:
        """What the processor sent to the internal topic since last asked, as the records it reads back (each on
        the partition it was sent to, or its key's)."""
        sent = self.channels.internal.sent[self.internal_read :]
        self.internal_read = len(self.channels.internal.sent)
        return [self.record(self.settings.internal_topic, s.value, s.key, s.partition) for s in sent]

    def hold(self, topic: str, partition: int, records_left: int = 1) -> None:
        """The broker holds `records_left` more records of a topic partition than were handed over so far."""
        tp = TP(topic, partition)
        self.consumer.highwaters[tp] = self.next_offset.get(tp, 0) + records_left

    # ---- running ----

    def run(self, *batch: FakeRecord) -> None:
        """Handle one batch, as the agent does."""
        asyncio.run(self.processor.handle(self.stream, list(batch)))

    # ---- what is observed ----

    def metric(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    def consumed(self, topic: str, event_type: str, outcome: str) -> float:
        return self.metric("escalera_events_consumed_total", topic=topic, type=event_type, outcome=outcome)

    def decisions(self) -> list[dict[str, Any]]:
        """Every decision sent (perks and transitions), in the order sent."""
        topics = {self.channels.perks.name, self.channels.transitions.name}
        return [orjson.loads(sent.value) for topic, sent in self.journal if topic in topics]

    def sent_to_internal(self, tag: bytes) -> list[Sent]:
        return [sent for sent in self.channels.internal.sent if sent.value[:1] == tag]
