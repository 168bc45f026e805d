"""The streaming engine: one Faust agent that decodes, orders by event time, applies the core and publishes.

Per batch: decode each record (bad ones go to the dead-letter topic), queue it in its partition's event-time
merge, then for every event the merge releases: load the customer's state, run the pure core (`evolve_in_place`),
keep the state, publish the decisions. States are written to the table once per batch, after the batch's
decisions are delivered (so a crash never keeps a state whose perks were lost), and records are
acknowledged only after their effects are queued for sending: Faust flushes the producer before it commits
an offset, so a crash replays unacknowledged records, which change nothing the second time (at-least-once
with idempotent effects; `exactly_once` is not used: it has open bugs in faust-streaming).

Table writes go to the changelog partition of Faust's *current event* (and RocksDB keeps them under that
partition), so the current event is set to the record being applied before any table access: a batch and
the merge mix partitions.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
from faust.types import TP
from sortedcontainers import SortedList  # type: ignore[import-untyped]

from engine.broker.partitioner import partition_of
from engine.errors import NotOwnedHere
from engine.loyalty import CustomerState, Outcome, Policy, Population, ReferralCredited, evolve_in_place, sweep_in_place
from engine.loyalty.due import DueCalendar
from engine.loyalty.figures import figures
from engine.settings import Settings
from engine.stream.app import Topology
from engine.stream.clock import StreamClock
from engine.stream.erasure import LocalPurge
from engine.stream.faust_fixes.ack_order import AckOrder
from engine.stream.faust_fixes.continuity import Continuity
from engine.stream.merge import EventTimeMerge
from engine.stream.metrics import WorkerMetrics
from engine.stream.population import PartitionSummary, PopulationBoard
from schemas.construct import flat_json
from schemas.decoder import DecodeLimits, Rejection, decode
from schemas.events import InboundEvent, RejectionSource

log = logging.getLogger("escalera.worker")

BATCH = 1000  # records per batch at most
BATCH_WAIT = 0.02  # seconds a batch waits to fill
# Internal records start with a tag: a clock tick for the partition it is sent to, a referral credit for
# the customer it is keyed by, or an inbound event rerouted to its customer's partition.
# A watermark tells the owners of other partitions the earliest event time at which the sender may still
# emit a referral credit: they hold back later events until it has passed (see `Engine._frontier`).
TICK, CREDIT, EVENT, WATERMARK = b"T", b"C", b"E", b"W"
EARLIEST = datetime.min.replace(tzinfo=UTC)
POPULATION_REFRESH = 5.0  # seconds between a partition's population passes (summary posted, volume classified)
ERASURE_PURGE = 10.0  # seconds between compactions of the local table files where customers were erased
CACHE_LIMIT = 100_000  # customer states kept in memory between batches at most
LOCAL_CREDITS = ""  # the merge input of credits this worker queues for its own partitions (no topic)


_Item = tuple[Any, InboundEvent | ReferralCredited, bool]
"""A queued record: the Faust event (its partition is where the state is written), what it says, and whether
acknowledging that event is this item's to do."""


@dataclass
class Tally:
    """What this worker has done: logged every 30 s (the metrics of issue 6 will count the same)."""

    consumed: int = 0
    applied: int = 0
    duplicates: int = 0
    rejected: int = 0
    decisions: int = 0
    perks: int = 0
    referrals: int = 0
    sweeps: int = 0
    skipped: int = 0  # records that came before earlier ones of their partition (read again in order)


@dataclass
class _Partition:
    """What this worker keeps for a partition it owns."""

    calendar: DueCalendar = field(default_factory=DueCalendar)
    touched: set[str] = field(default_factory=set)  # changed since their volume was last classified
    spends: dict[str, Decimal] = field(default_factory=dict)  # window spend as of each customer's clock
    by_spend: SortedList = field(default_factory=SortedList)  # (spend, customer_id) of every member
    placed: dict[str, tuple[str, str, str, int]] = field(default_factory=dict)  # see `place`
    steps: Counter[str] = field(default_factory=Counter)  # members per ladder step
    relationships: Counter[str] = field(default_factory=Counter)  # members per relationship quadrant
    satisfaction: Counter[str] = field(default_factory=Counter)  # members per satisfaction class
    formal_complaints: int = 0  # over the members
    changed: bool = True  # since its summary was last posted
    refreshed: float = 0.0  # monotonic time its population figures were last posted and applied
    population: Population | None = None  # the population its volume classes were last set against

    def set_spend(self, customer_id: str, spend: Decimal | None) -> None:
        """A member's window spend (None: no longer a member)."""
        before = self.spends.get(customer_id)
        if before == spend:
            return
        if before is not None:
            self.by_spend.remove((before, customer_id))
            del self.spends[customer_id]
        if spend is not None:
            self.spends[customer_id] = spend
            self.by_spend.add((spend, customer_id))
        self.changed = True

    @property
    def members(self) -> set[str]:
        """The partition's customers (those placed)."""
        return set(self.placed)

    def place(self, state: CustomerState | None, customer_id: str) -> None:
        """Count a member where its state puts it: step, relationship, satisfaction, formal complaints (None: no
        longer a member)."""
        before = self.placed.pop(customer_id, None)
        if before is not None:
            self._count(before, -1)
        if state is not None:
            where = (state.step or "none", state.relationship, state.satisfaction, state.formal_complaints)
            self._count(where, 1)
            self.placed[customer_id] = where

    def _count(self, where: tuple[str, str, str, int], sign: int) -> None:
        step, relationship, satisfaction, formal = where
        self.steps[step] += sign
        self.relationships[relationship] += sign
        self.satisfaction[satisfaction] += sign
        self.formal_complaints += sign * formal

    def movable(self, new: Population) -> set[str]:
        """The members whose volume class may differ between the last population and `new`: the untouched
        keep their spend, so only those between the old and the new mean or threshold can move."""
        old = self.population
        if old is None or not old.customers or not new.customers:
            return self.members
        moved: set[str] = set()
        for a, b in ((old.high_volume_threshold, new.high_volume_threshold), (old.mean_spend, new.mean_spend)):
            if a != b:
                span = self.by_spend.irange((min(a, b), ""), (max(a, b), ""), inclusive=(True, False))
                moved.update(customer_id for _, customer_id in span)
        return moved


class Engine:
    """The worker's state and its handling of batches and ticks (the Faust agent only hands them over)."""

    def __init__(self, settings: Settings, policy: Policy, topology: Topology, metrics: WorkerMetrics) -> None:
        self.settings, self.policy, self.topology, self.metrics = settings, policy, topology, metrics
        self.limits = DecodeLimits(
            max_bytes=settings.max_event_bytes,
            max_skew=timedelta(seconds=settings.max_clock_skew_seconds),
            currencies=policy.currencies,
        )
        self.table = topology.customers
        self.inbound = frozenset(settings.inbound_topics)
        # One merge over every input this worker owns: partitions cannot run ahead of one another, so a
        # referral credit reaches its referrer before the referrer's later events, as in the replay.
        self.merge: EventTimeMerge[tuple[str, int], _Item] = EventTimeMerge()
        self.last_read: dict[tuple[str, int], datetime] = {}  # event time of the last record read per input
        # partition read on -> other workers' partitions -> their frontier: a watermark vouches only for the
        # credits sent on the partition it was read from (credits and watermarks are ordered per partition)
        self.watermarks: dict[int, dict[int, datetime | None]] = {}
        self.sent_frontier: tuple[datetime | None, tuple[int, ...]] | None = None
        self.referred: set[str] = set()  # customers registered with a referrer: their first purchase converts
        self.context: dict[int, Any] = {}  # partition -> a record of it, to write that partition's table part
        self.clock = StreamClock(wall_clock_when_idle=settings.wall_clock_when_idle)
        self.board = PopulationBoard(settings.topic_partitions, policy.classification.high_volume_share)
        self.partitions: dict[int, _Partition] = {}
        self.cache: dict[str, CustomerState] = {}
        self.dirty: dict[str, Any] = {}  # customer_id -> the event whose partition their state is written under
        self.erased: set[str] = set()  # erased in this batch: gone, though the table holds them until written
        self.offsets: dict[TP, int] = {}  # last offset read per inbound topic partition
        self.acks = AckOrder()
        self.continuity = Continuity(topology.app.consumer)
        self.purge = LocalPurge(self.table)
        self.undelivered = False  # decisions or referral credits queued since the producer was last flushed
        self.tally = Tally()

    # ---- batches -------------------------------------------------------------------------------------

    async def handle(self, stream: Any, events: list[Any]) -> None:
        """Process one batch; acknowledge each record once its effects are queued for sending."""
        self._follow_assignment()
        for event in events:
            message = event.message
            if not self.continuity.admit(message):
                self.tally.skipped += 1  # records before it were skipped: it comes again after them
                continue
            self.tally.consumed += 1
            self.context[message.partition] = event
            self.acks.read(event)
            if message.topic == self.topology.internal.get_topic_name():
                if self._internal(stream, event):
                    self.acks.finish(event)
                continue
            self.offsets[message.tp] = message.offset
            result = decode(event.value, now=datetime.now(UTC), limits=self.limits, key=event.key)
            if isinstance(result, Rejection):
                self._dead_letter(result, message)
                self.acks.finish(event)
            elif event.key != result.customer_id.encode():
                # not keyed by its customer: repartition it to the customer's partition
                self._send(self.topology.internal, result.customer_id.encode(), EVENT + event.value)
                self.metrics.consumed(message.topic, result.type, "rerouted")
                self.acks.finish(event)
            else:
                stream._set_current_event(event)
                self._load(result.customer_id)  # warm the cache: the frontier reads states without a record
                if result.type == "customer.registered" and result.referred_by is not None:
                    self.referred.add(result.customer_id)
                source = (message.topic, message.partition)
                self.merge.push(source, result.occurred_at, (event, result, True))
                self.last_read[source] = result.occurred_at
        for event in self._release(stream):
            self.acks.finish(event)
        self._announce_frontier()
        if self.undelivered:
            # A state must never reach the changelog before the decisions it made reach their topics: Kafka
            # orders records per partition only, so a crash could keep the new state (the replayed event is
            # then a duplicate and decides nothing) and lose its perks. Delivered first, a crash between the
            # two can only publish a perk twice, under the same id.
            await self.topology.app.producer.flush()
            self.undelivered = False
        kept = set(self.owned_partitions())  # a rebalance may have run while the decisions were delivered
        # While this batch awaited, Faust's reader may have taken the next record, set it as the stream's current
        # event and paused until this batch is done; it then files the stream's current event into the next
        # batch (`Stream.noack_take`, `add_to_buffer`). Writing the states sets the current event to other
        # records: left so, the next batch would get one of those again instead of the new record, which
        # would be lost (found by the crash test: an input waiting forever for a record it never got).
        arrived = stream.current_event
        self._write_states(stream, kept)
        stream.current_event = arrived
        ready = [event for event in self.acks.ready() if event.message.partition in kept]
        log.debug("batch of %d records: %d acknowledged, %d wait", len(events), len(ready), self.acks.waiting())
        for event in ready:
            await stream.ack(event)
        if self.continuity.missing or self.continuity.stalled:
            await self.continuity.read_again()

    @staticmethod
    def _send(topic: Any, key: bytes | None, value: bytes, partition: int | None = None) -> None:
        """Queue a record for Faust's producer, which is flushed before offsets are committed (and, for a batch's
        decisions, before its states are written: see `handle`)."""
        topic.send_soon(key=key, value=value, partition=partition)

    def _release(self, stream: Any) -> list[Any]:
        """Apply what the merge and the other workers' watermarks let go; return the records to acknowledge."""
        released = []
        for event, decoded, acknowledge in self.merge.release(self._drained, until=self._barrier()):
            self._apply(stream, event, decoded, consumed=acknowledge)
            if acknowledge:
                released.append(event)
        return released

    def _drained(self, key: tuple[str, int]) -> bool:
        """Nothing more to read now at an input: every record up to its high watermark has been read."""
        if key[0] == LOCAL_CREDITS:
            return True  # filled while applying events, never read
        tp = TP(*key)
        highwater = self.topology.app.consumer.highwater(tp)
        if highwater is None:
            return False
        seen = self.offsets.get(tp)
        return highwater == 0 if seen is None else seen + 1 >= highwater

    def lag(self) -> list[tuple[str, int, int]]:
        """Records not yet read per owned inbound topic partition: (topic, partition, records)."""
        consumer = self.topology.app.consumer
        found = []
        for partition in self.partitions:
            for topic in self.settings.inbound_topics:
                tp = TP(topic, partition)
                highwater = consumer.highwater(tp)
                if highwater is not None:
                    seen = self.offsets.get(tp)
                    found.append((topic, partition, max(0, highwater - (0 if seen is None else seen + 1))))
        return found

    def _may_convert(self, decoded: InboundEvent | ReferralCredited) -> bool:
        """A purchase that may be a referred customer's first, and so may convert a referral."""
        if decoded.type != "purchase.completed":
            return False
        if decoded.referred_by is not None:
            return True
        customer_id = decoded.customer_id
        state = self.cache.get(customer_id)  # warmed when the record was queued
        if state is None:
            return customer_id in self.referred
        return not state.has_purchased and (state.referred_by is not None or customer_id in self.referred)

    def _frontier(self) -> datetime | None:
        """The earliest event time at which this worker may still emit a referral credit (None: not before
        new records arrive): its earliest queued possible first purchase, and for every input that still has
        records to deliver, the time of the last one read (what comes next is later, but for late events)."""
        times = [at for at, (_, decoded, _) in self.merge.items() if self._may_convert(decoded)]
        for key in self.merge.inputs():
            if key[0] != LOCAL_CREDITS and not self._drained(key):
                times.append(self.last_read.get(key, EARLIEST))
        return min(times) if times else None

    def _barrier(self) -> datetime | None:
        """How far this worker may go: the lowest frontier of the partitions it does not own (None: no limit)."""
        foreign = set(range(self.settings.topic_partitions)) - set(self.partitions)
        if not foreign:
            return None
        marks = [self.watermarks.get(read_on, {}).get(p, EARLIEST) for read_on in self.partitions for p in foreign]
        limits = [mark for mark in marks if mark is not None]
        return min(limits) if limits else None

    def _announce_frontier(self, again: bool = False) -> None:
        """Tell the owners of the other partitions this worker's frontier (after its credits, same topic)."""
        owned = tuple(sorted(self.partitions))
        foreign = set(range(self.settings.topic_partitions)) - set(owned)
        if not owned or not foreign:
            return
        frontier = self._frontier()
        if (frontier, owned) == self.sent_frontier and not again:
            return
        body = orjson.dumps({"partitions": owned, "until": None if frontier is None else frontier.isoformat()})
        for partition in sorted(foreign):
            self._send(self.topology.internal, None, WATERMARK + body, partition)
        self.sent_frontier = (frontier, owned)

    def _apply(self, stream: Any, event: Any, decoded: InboundEvent | ReferralCredited, consumed: bool = True) -> None:
        """Sweep the partition up to the event's day, then apply the event to its customer (`consumed`: the
        record itself was read from Kafka, not queued by this worker)."""
        began = time.perf_counter()
        partition = event.message.partition
        stream._set_current_event(event)  # table writes and reads go to this record's partition
        boundary = self.clock.observe(partition, decoded.occurred_at)
        if boundary is not None:
            self._sweep(event, partition, boundary)
        customer_id = decoded.customer_id
        state = self._load(customer_id)
        due_before = None if state is None else state.due
        outcome = evolve_in_place(state, decoded, self.policy)
        self._record(event, partition, customer_id, outcome, due_before)
        self.tally.applied += 1
        if consumed:
            self.metrics.consumed(event.message.topic, decoded.type, "duplicate" if outcome.duplicate else "applied")
            self.metrics.processing.observe(time.perf_counter() - began)
            self.metrics.lag.observe(max(0.0, time.time() - decoded.occurred_at.timestamp()))

    # ---- state ---------------------------------------------------------------------------------------

    def _load(self, customer_id: str) -> CustomerState | None:
        state = self.cache.get(customer_id)
        if state is None and customer_id not in self.erased:  # the table keeps them until the batch is written
            raw = self.table.get(customer_id.encode())
            if raw is not None:
                state = self.cache[customer_id] = CustomerState.from_json(raw)
        return state

    def _peek(self, customer_id: str) -> CustomerState | None:
        """A customer's state without keeping it in the cache (for passes over many customers)."""
        state = self.cache.get(customer_id)
        if state is None and customer_id not in self.erased:
            raw = self.table.get(customer_id.encode())
            if raw is not None:
                state = CustomerState.from_json(raw)
        return state

    def _record(self, event: Any, partition: int, customer_id: str, outcome: Outcome, due: datetime | None) -> None:
        """Keep the outcome's state and publish what it decided."""
        if outcome.duplicate:
            self.tally.duplicates += 1
            return
        self.metrics.decided(outcome)
        owned = self.partitions.setdefault(partition, _Partition())
        owned.touched.add(customer_id)
        state = outcome.state
        if state is None:
            self.cache.pop(customer_id, None)
            self.erased.add(customer_id)
            self.referred.discard(customer_id)
            owned.set_spend(customer_id, None)
            owned.place(None, customer_id)
        else:
            self.cache[customer_id] = state
            self.erased.discard(customer_id)  # erased, then back with a new event
            owned.place(state, customer_id)
            if state.due is not None and state.due != due:
                owned.calendar.add(state.due, customer_id)
        self.dirty[customer_id] = event
        key = customer_id.encode()
        self.undelivered |= bool(outcome.emitted or outcome.referrals)
        for decision in outcome.emitted:
            target = self.topology.perks if decision.type == "perk.granted" else self.topology.transitions
            self._send(target, key, flat_json(decision))
            self.tally.decisions += 1
            self.tally.perks += decision.type == "perk.granted"
        for credit in outcome.referrals:
            self._credit(credit)

    def _credit(self, credit: ReferralCredited) -> None:
        """Send a referral credit to the referrer's partition; if this worker owns it, queue it here too, at
        its event time (the copy from Kafka then changes nothing; it is there in case this worker dies)."""
        key = credit.customer_id.encode()
        self._send(self.topology.internal, key, CREDIT + credit.model_dump_json().encode())
        self.tally.referrals += 1
        partition = partition_of(key, self.settings.topic_partitions)
        context = self.context.get(partition)
        if partition in self.partitions and context is not None:
            self.merge.push((LOCAL_CREDITS, partition), credit.occurred_at, (context, credit, False))

    def _write_states(self, stream: Any, kept: set[int]) -> None:
        """Write every state changed in this batch to the table (its changelog), once each, if its partition is
        still owned (one given away meanwhile is its new owner's to write: that owner reads its records again)."""
        for customer_id, event in self.dirty.items():
            if event.message.partition not in kept:
                self.cache.pop(customer_id, None)  # not written: if the partition comes back, read it again
                continue
            stream._set_current_event(event)
            key = customer_id.encode()
            state = self.cache.get(customer_id)
            if state is not None:
                self.table[key] = state.to_json()
            elif key in self.table:
                del self.table[key]  # erasure: a tombstone in the changelog
                self.purge.erased_in(event.message.partition)

        self.dirty.clear()
        self.erased.clear()
        if len(self.cache) > CACHE_LIMIT:  # every state is in the table now: memory stays bounded
            self.cache.clear()
            for _, (_, decoded, _) in self.merge.items():  # the frontier reads the states of queued records
                self._load(decoded.customer_id)

    # ---- time ----------------------------------------------------------------------------------------

    def _sweep(self, event: Any, partition: int, until: datetime) -> None:
        """What the passage of time up to `until` causes for the partition's customers who are due."""
        owned = self.partitions.setdefault(partition, _Partition())
        for _, customer_id in owned.calendar.take(until):
            state = self._load(customer_id)
            if state is None or state.due is None:
                continue
            if state.due > until:
                owned.calendar.add(state.due, customer_id)
                continue
            due = state.due
            self._record(event, partition, customer_id, sweep_in_place(state, until, self.policy), due)
            self.tally.sweeps += 1

    def _tick(self, stream: Any, event: Any, partition: int) -> None:
        """A partition's periodic turn: let waiting records go, follow idle time, post and use population figures."""
        owned = self.partitions.get(partition)
        if owned is None:
            return  # not (or no longer) ours
        self._announce_frontier(again=True)
        stream._set_current_event(event)
        for topic, number in self.merge.holding_back(self._drained):
            if topic != LOCAL_CREDITS and number == partition:
                tp = TP(topic, number)
                seen = self.offsets.get(tp)  # none read yet: from the first record due, or the partition's start
                self.continuity.waiting(tp, self.continuity.due.get(tp, 0) if seen is None else seen + 1)
        idle = self.merge.pending() == 0 and all(self._drained((topic, partition)) for topic in self.inbound)
        if not idle:
            return
        latest = self.board.latest()
        if latest is not None:
            self.clock.heard(latest)
        target = self.clock.idle_tick(partition, datetime.now(UTC))
        if target is not None:
            self._sweep(event, partition, target)
        if time.monotonic() - owned.refreshed < POPULATION_REFRESH:
            return  # population figures are refreshed on a schedule
        owned.refreshed = time.monotonic()
        self._refresh_population(event, partition, owned)

    def _refresh_population(self, event: Any, partition: int, owned: _Partition) -> None:
        """Post the partition's spends if they changed, and classify the volume of the customers who changed
        or whom a new population may move (not every member: a partition may hold a million)."""
        began = time.perf_counter()
        spends = len(owned.touched)
        for customer_id in owned.touched:
            state = self._peek(customer_id)
            spend = None if state is None else figures(state, state.clock, self.policy).window_spend
            owned.set_spend(customer_id, spend)
        if owned.changed or spends:  # spends, or at least the partition's latest event time, moved
            self._post_summary(partition, owned)
        population = self.board.population()
        moment = self.clock.now(partition)
        if population is None or moment is None:
            return
        candidates = owned.touched | owned.movable(population) if population != owned.population else owned.touched
        for customer_id in sorted(candidates):
            state = self._peek(customer_id)
            if state is None:
                continue
            clock, due = state.clock, state.due
            outcome = sweep_in_place(state, moment, self.policy, population)
            if outcome.emitted or state.clock != clock or state.due != due:  # else nothing to write
                self._record(event, partition, customer_id, outcome, due)
        owned.population = population
        owned.touched = set()  # including those just classified: their spend did not change
        seconds = time.perf_counter() - began
        log.log(logging.INFO if seconds > 1 else logging.DEBUG,
                "population pass on partition %d: %d spends computed, %d customers classified in %.2f s",
                partition, spends, len(candidates), seconds)  # fmt: skip

    def _post_summary(self, partition: int, owned: _Partition) -> None:
        spends = tuple(spend for spend, _ in owned.by_spend if spend > 0)  # in ascending order
        summary = PartitionSummary(self.clock.now(partition), spends)
        self._send(self.topology.partition_stats, str(partition).encode(), summary.to_bytes())
        self.board.post(partition, summary)
        owned.changed = False

    # ---- internal records ----------------------------------------------------------------------------

    def _internal(self, stream: Any, event: Any) -> bool:
        """An internal record: a tag byte, then its body (see `TICK`, `CREDIT`, `EVENT`, `WATERMARK`).
        True when it is done with; a credit waits in the merge and is acknowledged when applied."""
        tag, body = event.value[:1], event.value[1:]
        if tag == TICK:
            self._tick(stream, event, event.message.partition)
        elif tag == CREDIT:  # in event-time order with the partition's own events
            credit = ReferralCredited.model_validate_json(body)
            self.merge.push((LOCAL_CREDITS, event.message.partition), credit.occurred_at, (event, credit, True))
            return False
        elif tag == WATERMARK:
            mark = orjson.loads(body)
            until = None if mark["until"] is None else datetime.fromisoformat(mark["until"])
            marks = self.watermarks.setdefault(event.message.partition, {})
            for partition in mark["partitions"]:
                marks[partition] = until
        elif tag == EVENT:
            result = decode(body, now=datetime.now(UTC), limits=self.limits)
            if not isinstance(result, Rejection):
                self._apply(stream, event, result)
        return True

    def _dead_letter(self, rejection: Rejection, message: Any) -> None:
        source = RejectionSource(topic=message.topic, partition=message.partition, offset=message.offset)
        letter = rejection.to_event(source, datetime.now(UTC))
        key = None if letter.customer_id is None else letter.customer_id.encode()
        self._send(self.topology.dead_letters, key, letter.model_dump_json().encode())
        self.tally.rejected += 1
        self.metrics.rejected(message.topic, rejection.reason)

    # ---- ownership -----------------------------------------------------------------------------------

    def customer(self, customer_id: str) -> CustomerState | None:
        """A customer's current state, if this worker owns their partition (else NotOwnedHere)."""
        partition = partition_of(customer_id.encode(), self.settings.topic_partitions)
        if partition not in self.owned_partitions():
            raise NotOwnedHere(f"partition {partition} of customer {customer_id!r} is not owned by this worker")
        return self._peek(customer_id)

    def owned_partitions(self) -> list[int]:
        """The partitions of the inbound topics this worker actively owns (not standbys)."""
        assignment = self.topology.app.consumer.assignment()
        return sorted({tp.partition for tp in assignment if tp.topic in self.inbound})

    def _follow_assignment(self) -> None:
        """After a rebalance: forget partitions given away, learn the ones received from the table."""
        owned = set(self.owned_partitions())
        if owned == set(self.partitions) and self.partitions:
            return
        log.info("owning partitions %s", sorted(owned))
        self._learn_positions(owned)
        # Records queued for partitions given away are unacknowledged: the new owner reads them again.
        inputs = [(LOCAL_CREDITS, p) for p in sorted(owned)] + [
            (t, p) for p in sorted(owned) for t in self.settings.inbound_topics
        ]
        self.merge.set_inputs(inputs)
        self.acks.forget(owned)
        self.continuity.forget(owned)
        for partition in set(self.partitions) - owned:
            for topic in self.settings.inbound_topics:
                self.offsets.pop(TP(topic, partition), None)
            self.clock.forget(partition)
            self.context.pop(partition, None)
            del self.partitions[partition]
        self.cache.clear()
        new = owned - set(self.partitions)
        for partition in new:
            self.partitions[partition] = _Partition()
        self._learn(new)

    def _learn_positions(self, partitions: Iterable[int]) -> None:
        """Where reading resumes on each owned input: a record before the group's committed offset counts as
        read, so an input committed up to its end is known to hold nothing more. Faust's record of committed
        offsets is read (it exposes no positions); asking the consumer for positions while it fetches made
        records go missing in our two-worker tests."""
        committed: dict[TP, int | None] = getattr(self.topology.app.consumer, "_committed_offset", {})
        for partition in partitions:
            for topic in (*self.settings.inbound_topics, self.topology.internal.get_topic_name()):
                tp = TP(topic, partition)
                offset = committed.get(tp)
                self.continuity.start(tp, offset)
                if topic in self.inbound and tp not in self.offsets and offset:
                    self.offsets[tp] = offset - 1

    def _learn(self, partitions: Iterable[int]) -> None:
        """File the customers of newly owned partitions under their due days and restore the partitions' clocks."""
        wanted = set(partitions)
        if not wanted:
            return
        for key, raw in self.table.items():
            partition = partition_of(key, self.settings.topic_partitions)
            if partition not in wanted:
                continue  # a standby copy or another partition
            state = CustomerState.from_json(raw)
            owned = self.partitions[partition]
            owned.touched.add(state.customer_id)  # its spend is computed at the first population refresh
            owned.place(state, state.customer_id)
            if state.due is not None:
                owned.calendar.add(state.due, state.customer_id)
            if self.clock.now(partition) is None or state.clock > self.clock.now(partition):  # type: ignore[operator]
                self.clock.restore(partition, state.clock)
