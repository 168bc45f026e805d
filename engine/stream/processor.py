"""The stream processor: one batch of records — admit, decode, route, merge, apply, deliver, write, acknowledge.

Per batch: decode each record (bad ones go to the dead-letter topic), queue it in its partition's event-time
merge, then for every event the merge releases: load the customer's state, run the pure core, keep the state,
publish the decisions. States are written to the table once per batch, after the batch's decisions are delivered
(so a crash never keeps a state whose perks were lost), and records are acknowledged only after their effects
are queued for sending: Faust flushes the producer before it commits an offset, so a crash replays
unacknowledged records, which change nothing the second time (at-least-once with idempotent effects;
`exactly_once` is not used: it has open bugs in faust-streaming).

"Record" here is a Faust event (a Kafka record with its message and offset); "event" is a domain event.
Its parts, each in a module of its own: the internal topic's records (`records`), the inputs and their merge
(`inputs`), the referral frontier (`referrals`), the batch's states and table writes (`states`), what an outcome
leads to (`effects`), the partitions owned (`partitions`, `ownership`), the stream clock (`clock`) and the
population figures (`population`). Faust and
Kafka are reached only through the small protocols of `ports`, so the processor is tested with fakes
(tests/unit/test_processor.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.broker.partitioner import partition_of
from engine.broker.table_keys import ledger_key
from engine.errors import NotOwnedHere
from engine.loyalty import CustomerState, Policy, ReferralCredited, ReferralReverted, day_start, evolve_in_place
from engine.loyalty.budgets import BudgetError, Ledgers, PartitionLedger
from engine.loyalty.due import sweep_due
from engine.loyalty.switch import switch_in_place
from engine.loyalty.volume import classify_day
from engine.settings import ENV_PREFIX, Settings
from engine.stream import records
from engine.stream.clock import StreamClock
from engine.stream.effects import Effects
from engine.stream.erasure import LocalPurge
from engine.stream.faust_fixes.ack_order import AckOrder
from engine.stream.faust_fixes.continuity import Continuity
from engine.stream.inputs import LOCAL_CREDITS, Inputs
from engine.stream.metrics import WorkerMetrics
from engine.stream.ownership import Ownership
from engine.stream.partitions import OwnedPartition
from engine.stream.population import PartitionSummary, PopulationBoard, population_record
from engine.stream.ports import Channels, Consumer, Producer, RecordStream
from engine.stream.referrals import ReferralFrontier
from engine.stream.states import BatchStates
from engine.stream.switch import CHUNK, PolicySwitch
from schemas.decoder import Rejection, decode
from schemas.events import InboundEvent

log = logging.getLogger("escalera.worker")

BATCH = 1000  # records per batch at most
BATCH_WAIT = 0.02  # seconds a batch waits to fill
DAY = timedelta(days=1)
_BEFORE = timedelta(microseconds=1)  # the merge lets go items up to a time inclusive: just before a midnight

_Fact = InboundEvent | ReferralCredited | ReferralReverted  # what is applied to a customer
_Item = tuple[Any, _Fact, bool]
"""A queued record: the Faust record (its partition is where the state is written), what it says, and whether
acknowledging that record is this item's to do."""


class Processor:
    """The worker's state and its handling of batches and ticks (the Faust agent only hands them over)."""

    def __init__(
        self,
        settings: Settings,
        policy: Policy,
        channels: Channels,
        consumer: Consumer,
        producer: Producer,
        metrics: WorkerMetrics,
    ) -> None:
        self.settings, self.policy, self.channels, self.metrics = settings, policy, channels, metrics
        self.producer = producer
        self.limits = settings.decode_limits(policy.currencies)
        self.internal_topic = channels.internal.get_topic_name()
        self.table_name = str(channels.customers.name)  # Faust routes a query for a key to its partition's owner
        # One merge over every input this worker owns: partitions cannot run ahead of one another, so a
        # referral credit reaches its referrer before the referrer's later events, as in the replay.
        self.inputs: Inputs[_Item] = Inputs(consumer, settings.inbound_topics, settings.arrival_grace_seconds)
        self.referrals = ReferralFrontier(settings.topic_partitions, policy.perks.holds)
        self.states = BatchStates(channels.customers)
        self.clock = StreamClock(wall_clock_when_idle=settings.wall_clock_when_idle)
        self.board = PopulationBoard(settings.topic_partitions, policy.classification.high_volume_share)
        self.next_day: datetime | None = None  # the next midnight to pass (volume on event time)
        self.waiting: datetime | None = None  # a midnight whose population other workers have yet to complete
        self._settled: datetime | None = None  # the last midnight whose summaries were posted
        # Per partition, the latest event time applied or midnight passed: an event older than it is late (the stream
        # clock's own time also follows other partitions when idle, which says nothing of this partition's order).
        self.passed: dict[int, datetime] = {}
        # Referral credits this worker made for a partition it owns (event id -> that partition), until their copy
        # comes back from the internal topic: it waits for no arrival grace (`_queue_credit`).
        self.credits_made: dict[str, int] = {}
        # Those of them applied here before their copy came back (event id -> partition): the copy is then passed over
        # (`_queue_credit`), not applied as a duplicate, which it is not once the referrer was erased in between.
        self.applied_here: dict[str, int] = {}
        self._wake: asyncio.TimerHandle | None = None  # a tick to send when the arrival grace ends (`_wake_up`)
        self._wake_at = 0.0
        self.ownership = Ownership(consumer, settings.inbound_topics, self.internal_topic)
        self.acks = AckOrder()
        self.continuity = Continuity(consumer)
        self.purge = LocalPurge(channels.customers)
        self.effects = Effects(channels, metrics, self.states, self.referrals, self.inputs, settings.topic_partitions)
        self.partitions, self.context = self.effects.partitions, self.effects.context
        # The perk budget ledgers of the partitions owned (only for a policy with budgets): see `_follow_ledgers`.
        self.ledgers = Ledgers(settings.topic_partitions) if policy.budgeted else None
        # Partitions whose customers were evaluated under another policy: re-evaluated before anything else.
        self.switch = PolicySwitch(policy, settings.switch_perks_per_second)
        self.on_internal: dict[type, Callable[[RecordStream, Any, Any], bool]] = {
            records.Tick: self._tick,
            records.Credit: self._queue_credit,
            records.Reverted: self._queue_credit,
            records.Watermark: self._heard,
            records.Rerouted: self._rerouted,
        }

    # ---- batches -------------------------------------------------------------------------------------

    async def handle(self, stream: RecordStream, batch: list[Any]) -> None:
        """Process one batch; acknowledge each record once its effects are queued for sending."""
        self._follow_assignment()
        if self.ledgers is not None and (cannot := self._follow_ledgers()) is not None:
            await _stop(stream, cannot)  # nothing of the batch applied, nor acknowledged
            return
        self.switch.follow(set(self.owned_partitions()), self.states.stored, lambda p: self.customers_of([p]))
        faust_took = None  # (the current event Faust's reader set while this batch awaited, before the batch's own)
        if self.continuity.unknown:  # partitions received: where reading resumes, from the broker (issue 18)
            for tp, offset in (await self.continuity.settle_starts()).items():
                self.inputs.resume(tp, offset)
            faust_took = (stream.current_event,)
        for record in batch:
            message = record.message
            if not self.continuity.admit(message):
                self.metrics.read_again.inc()  # records before it were skipped: it comes again after them
                continue
            self.context[message.partition] = record
            self.acks.read(record)
            if message.topic == self.internal_topic:
                internal = records.decode(record.value)
                if internal is None or self.on_internal[type(internal)](stream, record, internal):
                    self.acks.finish(record)
            elif self._intake(stream, record):
                self.acks.finish(record)
        if self.switch.under_way:
            self._switch_some(stream)
        if not self.switch.under_way:  # (until the switch is done, events wait in the merge: engine/stream/switch.py)
            for record in self._release(stream):
                self.acks.finish(record)
        if faust_took is not None:
            # Reading the batch's states made its records the current event (`BatchStates.load`); Faust's reader,
            # which may have taken the next record while the batch awaited the broker above, files the current event
            # into the next batch when it resumes: put its record back (finding 6 of RELIABILITY.md's crash section:
            # one record twice in the next batch, the one taken never; caught by the metrics tests).
            stream.current_event = faust_took[0]
        self._wake_up()
        self._announce_frontier()
        if self.effects.undelivered:
            # A state must never reach the changelog before the decisions it made reach their topics: Kafka
            # orders records per partition only, so a crash could keep the new state (the replayed event is
            # then a duplicate and decides nothing) and lose its perks. Delivered first, a crash between the
            # two can only publish a perk twice, under the same id.
            await self.producer.flush()
            self.effects.undelivered = False
        kept = set(self.owned_partitions())  # a rebalance may have run while the decisions were delivered
        versions = self._versions_to_save(kept)
        for partition in self.states.write(stream, kept, self._ledgers_to_save(kept) + versions):
            self.purge.erased_in(partition)
        self.switch.written(partition for partition, _, _, _ in versions)
        queued = ((record, event.customer_id) for _, (record, event, _) in self.inputs.merge.items())
        self.states.trim(stream, queued)
        ready = [record for record in self.acks.ready() if record.message.partition in kept]
        log.debug("batch of %d records: %d acknowledged, %d wait", len(batch), len(ready), self.acks.waiting())
        for record in ready:
            await stream.ack(record)
        if self.continuity.missing or self.continuity.stalled:
            await self.continuity.read_again()

    def _intake(self, stream: RecordStream, record: Any) -> bool:
        """An inbound record: dead-letter it, reroute it to its customer's partition, or queue it in the merge.
        True when it is done with."""
        message = record.message
        self.inputs.read(message.tp, message.offset)
        event = decode(record.value, now=datetime.now(UTC), limits=self.limits, key=record.key)
        if isinstance(event, Rejection):
            self.effects.dead_letter(event, message)
            return True
        if record.key != event.customer_id.encode():  # not keyed by its customer: to the customer's partition
            self.effects.send(
                self.channels.internal, event.customer_id.encode(), records.encode(records.Rerouted(record.value))
            )
            self.metrics.consumed(message.topic, event.type, "rerouted")
            return True
        self.states.load(stream, record, event.customer_id)  # warm: the frontier reads states without a record
        self.referrals.registered(event)
        self.inputs.queue(
            (message.topic, message.partition), event.occurred_at, (record, event, True), message.timestamp
        )
        return False

    def _release(self, stream: RecordStream) -> list[Any]:
        """Apply what the merge, the other workers' watermarks and the next midnight let go, passing midnights when
        every event before them is applied; return the records to acknowledge."""
        released = []
        while True:
            if self.next_day is None and (first := self.inputs.ready()) is not None:
                self.next_day = day_start(first) + DAY
            barrier = self.referrals.barrier(self.partitions)
            until = barrier if self.next_day is None else min(barrier or self.next_day, self.next_day - _BEFORE)
            for record, event, acknowledge in self.inputs.release(until):
                self._apply(stream, record, event, consumed=acknowledge)
                if acknowledge:
                    released.append(record)
            ready = self.inputs.ready()
            if ready is None or self.next_day is None or ready < self.next_day:
                return released  # waiting for an input, or for another worker's referral credits
            if barrier is not None and barrier < self.next_day:
                return released  # another worker may still credit a referral before the midnight
            if not self._pass_days(stream, ready, barrier):
                return released

    def _wake_up(self) -> None:
        """When what the merge would let go next was held back by the arrival grace, have a batch run as soon as the
        grace ends: a tick, sent then unless a batch has let it go meanwhile. Without it, once no other record came
        (the last events published), they waited for the next periodic tick (`--tick`, 1 s by default) after their
        grace (issue 18). One wake-up at a time, at the earliest moment one is needed."""
        due = self.inputs.grace_ends()
        if due is None or due <= self.inputs.released_at:
            return  # not held back by the grace when last released (but by another worker's frontier, a midnight)
        if self._wake is not None:
            if self._wake_at <= due:
                return
            self._wake.cancel()
        self._wake_at = due
        # a millisecond more: uvloop's timers count whole milliseconds, and woken early it would only wait again
        self._wake = asyncio.get_running_loop().call_later(max(0.0, due - time.time()) + 0.001, self._woken)

    def _woken(self) -> None:
        self._wake = None
        due = self.inputs.grace_ends()
        if due is not None and due > time.time():  # a later event is next now
            self._wake_up()
        elif due is not None and self.partitions:  # still there, its grace over: a batch lets it go
            self.effects.send(self.channels.internal, None, records.encode(records.Tick()), min(self.partitions))

    def _announce_frontier(self, again: bool = False) -> None:
        """Tell the owners of the other partitions this worker's frontier (after its credits, same topic)."""

        def frontier() -> datetime | None:
            queued = ((at, event) for at, (_, event, _) in self.inputs.merge.items())
            return self.referrals.frontier(queued, self.inputs.reading(), self.states.cached)

        for partition, mark in self.referrals.announcement(self.partitions, frontier, again):
            self.effects.send(self.channels.internal, None, records.encode(mark), partition)

    def _apply(self, stream: RecordStream, record: Any, event: _Fact, consumed: bool) -> None:
        """Sweep the partition up to the event's day, then apply the event to its customer (`consumed`: the
        record itself was read from Kafka, not queued by this worker)."""
        began = time.perf_counter()
        partition = record.message.partition
        passed = self.passed.get(partition)
        if passed is None or event.occurred_at > passed:
            self.passed[partition] = event.occurred_at
        boundary = self.clock.observe(partition, event.occurred_at)
        if boundary is not None:
            self._sweep(stream, record, partition, boundary)
        state = self.states.load(stream, record, event.customer_id)
        due_before = None if state is None else state.due
        outcome = evolve_in_place(state, event, self.policy, self._ledger(partition))
        self.effects.record(record, partition, event.customer_id, outcome, due_before)
        if not consumed and event.event_id in self.credits_made:
            self.applied_here[event.event_id] = partition
        made: tuple[ReferralCredited | ReferralReverted, ...] = (*outcome.referrals, *outcome.reversals)
        for credit in made:
            referrer = partition_of(credit.customer_id.encode(), self.settings.topic_partitions)
            if referrer in self.partitions:
                self.credits_made[credit.event_id] = referrer
        due = None if outcome.state is None else outcome.state.due
        passed_midnight = None if self.next_day is None else self.next_day - DAY
        if due is not None and passed_midnight is not None and due <= passed_midnight:
            # A late (or rerouted) event left its customer due at a midnight already passed: swept to it now, as
            # the replay does (`Replay.feed`), not at the next midnight, which may be long in coming.
            self._sweep(stream, record, partition, passed_midnight)
        if consumed:
            self.metrics.consumed(record.message.topic, event.type, "duplicate" if outcome.duplicate else "applied")
            if passed is not None and event.occurred_at < passed and not outcome.duplicate:
                self.metrics.late.labels(record.message.topic).inc()
                self.metrics.lateness.observe((passed - event.occurred_at).total_seconds())
            self.metrics.processing.observe(time.perf_counter() - began)
            self.metrics.lag.observe(max(0.0, time.time() - event.occurred_at.timestamp()))

    # ---- internal records (see engine.stream.records); each handler returns whether the record is done with ----

    def _queue_credit(self, stream: RecordStream, record: Any, internal: records.Credit | records.Reverted) -> bool:
        """In event-time order with the partition's own events; acknowledged when applied (a referral reversal
        likewise, in everything said here of credits). A credit this worker made
        (the copy of one it queued itself, or the only one when it could not) waits for no arrival grace, as when it
        was queued here (`Inputs.queue`): a copy holding the later events for a grace from when it was sent delayed
        them as much as the original did. One from another worker, or from before a restart, waits the grace from
        when it was sent: an event published up to the grace after the purchase it comes from still goes first.

        The copy of one already applied here is passed over: applied, it would be a duplicate of it for the referrer's
        state, unless the referrer asked to be erased meanwhile (a later event, applied before the copy came back):
        the copy then made the erased referrer again, from nothing (the issue 19 equivalence test, one worker,
        referrers erased after their friends' conversions). A copy read again after a restart is applied: this worker
        no longer knows it applied the original, whose effects may not have been written."""
        credit = internal.credit if isinstance(internal, records.Credit) else internal.reverted
        if self.applied_here.pop(credit.event_id, None) is not None:
            self.credits_made.pop(credit.event_id, None)
            self.metrics.consumed(record.message.topic, credit.type, "duplicate")  # as when it was applied (`_apply`)
            self.metrics.processing.observe(0.0)
            self.metrics.lag.observe(max(0.0, time.time() - credit.occurred_at.timestamp()))
            return True
        source = (LOCAL_CREDITS, record.message.partition)
        made_here = self.credits_made.pop(credit.event_id, None) is not None
        published = None if made_here else record.message.timestamp
        self.inputs.queue(source, credit.occurred_at, (record, credit, True), published)
        return False

    def _heard(self, stream: RecordStream, record: Any, mark: records.Watermark) -> bool:
        self.referrals.heard(record.message.partition, mark)
        return True

    def _rerouted(self, stream: RecordStream, record: Any, internal: records.Rerouted) -> bool:
        event = decode(internal.value, now=datetime.now(UTC), limits=self.limits)
        if not isinstance(event, Rejection):
            self._apply(stream, record, event, consumed=True)
        return True

    # ---- time ----------------------------------------------------------------------------------------

    def _sweep(self, stream: RecordStream, record: Any, partition: int, until: datetime) -> None:
        """What the passage of time up to `until` causes for the partition's customers who are due."""
        owned = self.partitions.setdefault(partition, OwnedPartition())

        def load(customer_id: str) -> CustomerState | None:
            return self.states.load(stream, record, customer_id)

        for customer_id, outcome, due in sweep_due(owned.calendar, until, load, self.policy, self._ledger(partition)):
            self.effects.record(record, partition, customer_id, outcome, due)
            self.metrics.time_sweeps.inc()

    def _pass_days(self, stream: RecordStream, until: datetime, barrier: datetime | None) -> bool:
        """Pass every midnight up to `until` that the referral barrier allows; False when one waits for the others'
        spends (or for a record of each owned partition to write under)."""
        while self.next_day is not None and self.next_day <= until and (barrier is None or barrier >= self.next_day):
            if not self._pass_day(stream, self.next_day):
                return False
        return True

    def _pass_day(self, stream: RecordStream, day: datetime) -> bool:
        """Pass midnight `day` on every owned partition: sweep who is due, post the spends as of it, and once every
        partition has posted, classify volume against the population of all (`engine.loyalty.volume`)."""
        owned = sorted(self.partitions.items())
        if not owned or any(self.context.get(p) is None and (part.spends or part.calendar) for p, part in owned):
            return False  # a partition's table is written under one of its records: the next tick brings one
        shared = len(owned) < self.settings.topic_partitions  # other workers wait for these partitions' midnights
        if self._settled != day:
            for partition, part in owned:
                record = self.context.get(partition)
                self._sweep(stream, record, partition, day)
                self.clock.reach(partition, day)
                self.passed[partition] = max(self.passed.get(partition, day), day)
                part.settle(day, self._peeker(stream, record), self.policy)
                latest = max(self.clock.latest or day, day)
                if part.fresh and part.empty_before is None:
                    part.empty_before = day  # nothing was applied to it before: it held nobody at earlier midnights
                spends = part.positive_spends() if part.changed else None
                summary = PartitionSummary(day, latest, spends, part.empty_before)
                self.board.post(partition, summary)
                if summary.spends is not None or shared:
                    self.effects.send(self.channels.partition_stats, summary.key(partition), summary.to_bytes())
            self._settled = day
        began = time.perf_counter()
        population = self.board.population_at(day)
        if population is None:
            self.waiting = day
            return False
        if shared:
            self.effects.send(self.channels.partition_stats, *population_record(day, population))
        classified = 0
        for partition, part in owned:
            record = self.context.get(partition)
            classified += len(part.touched)
            for customer_id, outcome, due in classify_day(
                part, day, population, self._peeker(stream, record), self.policy, self._ledger(partition)
            ):
                self.effects.record(record, partition, customer_id, outcome, due)
        self.next_day, self.waiting = day + DAY, None
        self.board.forget_before(self.next_day)
        seconds = time.perf_counter() - began
        log.log(logging.INFO if seconds > 1 else logging.DEBUG,
                "midnight %s passed: volume of %d or more customers classified in %.2f s",
                day.date(), classified, seconds)  # fmt: skip
        return True

    def _peeker(self, stream: RecordStream, record: Any) -> Callable[[str], CustomerState | None]:
        """States read without keeping them in memory (a midnight may touch a partition's every customer)."""

        def peek(customer_id: str) -> CustomerState | None:
            return self.states.peek(stream, record, customer_id)

        return peek

    def _tick(self, stream: RecordStream, record: Any, _: records.Tick) -> bool:
        """A partition's periodic turn: let waiting records go, follow idle time and pass the midnights it reaches."""
        partition = record.message.partition
        if partition not in self.partitions:
            return True  # not (or no longer) ours
        self._announce_frontier(again=True)
        for tp, seen in self.inputs.unread(partition):
            # none read yet: from the first record due, or the partition's start
            self.continuity.waiting(tp, self.continuity.due.get(tp, 0) if seen is None else seen + 1)
        if not self.inputs.idle(partition):
            return True
        latest = self.board.latest()
        if latest is not None:
            self.clock.heard(latest)
        self.clock.idle_tick(partition, datetime.now(UTC), self.inputs.quiet_seconds())
        now = self.clock.now(partition)
        if now is not None and all(self.inputs.idle(p) for p in self.partitions) and not self.switch.under_way:
            # Nothing is queued and nothing is left to read: idle time passes midnights too, with their sweeps (a
            # quiet shop notices who stopped buying, its volume follows the days; a worker that owns no customers
            # yet passes the midnights the others wait for). Never a partition alone: a midnight's sweeps come
            # before its volume, for every partition of the worker.
            if self.next_day is None:
                self.next_day = day_start(now)
            self._pass_days(stream, now, self.referrals.barrier(self.partitions))
        return True

    # ---- ownership -----------------------------------------------------------------------------------

    def customer(self, customer_id: str) -> CustomerState | None:
        """A customer's current state, if this worker owns their partition (else NotOwnedHere)."""
        partition = partition_of(customer_id.encode(), self.settings.topic_partitions)
        if partition not in self.owned_partitions():
            raise NotOwnedHere(f"partition {partition} of customer {customer_id!r} is not owned by this worker")
        return self.states.peek_any(customer_id)

    def owned_partitions(self) -> list[int]:
        """The partitions of the inbound topics this worker actively owns (not standbys)."""
        return self.ownership.owned()

    def lag(self) -> list[tuple[str, int, int]]:
        """Records not yet read per owned inbound topic partition: (topic, partition, records)."""
        return self.inputs.lag(self.partitions)

    def _follow_assignment(self) -> None:
        """After a rebalance: forget partitions given away, learn the ones received from the table."""
        owned = set(self.owned_partitions())
        if owned == set(self.partitions) and self.partitions:
            return
        log.info("owning partitions %s", sorted(owned))
        for tp, committed in self.ownership.committed(owned):
            self.continuity.start(tp, committed)
            self.inputs.resume(tp, committed)
        self.inputs.follow(owned)
        self.acks.forget(owned)
        self.credits_made = {made: p for made, p in self.credits_made.items() if p in owned}
        self.applied_here = {made: p for made, p in self.applied_here.items() if p in owned}
        self.continuity.forget(owned)
        for partition in set(self.partitions) - owned:
            self.clock.forget(partition)
            self.passed.pop(partition, None)
            self.context.pop(partition, None)
            del self.partitions[partition]
        self.states.forget(owned)
        self._settled = None  # a midnight being passed is posted again, for the partitions received too
        new = owned - set(self.partitions)
        for partition in new:
            self.partitions[partition] = OwnedPartition()
        began, learned = time.monotonic(), 0
        for partition, summary in self.ownership.restored(self.states.stored_in(new, self.settings.topic_partitions)):
            self.partitions[partition].restore(summary)
            self.clock.restore(partition, summary.clock)
            learned += 1
        if learned:
            log.info("learned %d customers of partitions %s from the table in %.1f s", learned, sorted(new),
                     time.monotonic() - began)  # fmt: skip
        restored = [moment for p in new if (moment := self.clock.now(p)) is not None]
        resume = day_start(min(restored)) + DAY if restored else None  # after the least advanced partition's time
        if resume is not None and (self.next_day is None or resume < self.next_day):
            # Partitions received behind the midnights this worker passed (their last owner died before its latest
            # states were written): those midnights are passed again, so their customers' volume is decided at the
            # same midnights as in the replay. This worker's own customers are already past them or keep their class
            # (`classify_day` leaves alone whoever is past a midnight, or changed class at it or later).
            self.next_day = resume

    # ---- perk budgets (engine/loyalty/budgets.py) --------------------------------------------------------------

    def _ledger(self, partition: int) -> PartitionLedger | None:
        """Where the grants decided for a record of `partition` are counted: its ledger (None without budgets; None
        too for a partition not owned: a budgeted perk is then held back, never granted beyond what the partition's
        owner counts)."""
        return None if self.ledgers is None else self.ledgers.by_partition.get(partition)

    def _follow_ledgers(self) -> str | None:
        """Hold the ledger of every partition owned and no other: one given away is dropped (its new owner restores
        it from the table); one received is read from the table, where it was saved under `ledger_key` (none there:
        nothing was counted in it yet), when its first batch comes, as the customers received are
        (`_follow_assignment`) and their states are. Waiting for Faust's `actives_ready` instead, which can lag the
        records it already hands over, held a budgeted perk back for want of a ledger (the bootstrap-seeded test,
        once in two fresh-clone runs). Returns why the worker cannot go on, if it cannot."""
        ledgers = self.ledgers
        assert ledgers is not None
        owned = set(self.owned_partitions())
        for partition in set(ledgers.by_partition) - owned:
            ledgers.drop(partition)
        missing = owned - set(ledgers.by_partition)
        if not missing:
            return None
        counted = []
        for partition in sorted(missing):
            raw = self.states.stored(partition, ledger_key(partition))
            if raw is None:
                ledgers.of_partition(partition)  # nothing counted in it yet
                continue
            try:
                ledger = ledgers.restore(raw)
            except BudgetError as error:
                return (
                    f"cannot count perk budgets: {error} ({ENV_PREFIX}TOPIC_PARTITIONS="
                    f"{self.settings.topic_partitions}: run the workers with the partition count the budgets were "
                    "counted with, or seed the table again with `escalera bootstrap --replace`)"
                )
            if ledger.partition != partition:
                ledgers.drop(ledger.partition)
                return f"cannot count perk budgets: the ledger kept for partition {partition} is {ledger.partition}'s"
            counted.append(partition)
        log.info("perk budget ledgers of partitions %s taken from the table (grants counted in %s)", sorted(missing),
                 counted)  # fmt: skip
        return None

    def _ledgers_to_save(self, kept: set[int]) -> list[tuple[int, Any, bytes, bytes]]:
        """The ledgers that counted grants in this batch, to save with its states (`BatchStates.write`): (partition, a
        record of it, key, saved ledger) each, marked saved.

        Each is written after the batch's decisions were delivered, like the states, and *before* the partition's
        states, in the same changelog partition (Kafka keeps their order): a state in the changelog is always preceded
        by the ledger that counted its grants. The other order could lose a ledger and keep the states after a crash:
        the events read again are then duplicates for their states, decide nothing, and the ids they had counted
        would never be counted again, so the partition could grant beyond its share. In this order a crash can lose
        states and keep their ledger: the events read again decide again from the older states, each grant is taken
        again under the same perk id (counted once: `PartitionLedger.take`), and a perk held back because the share
        was spent is held back again (the ledger only holds more ids). The one difference: a decision dated in a
        period the saved ledger already closed (more than `KEPT_AFTER` before the latest decision it counted, in a
        batch spanning that much event time) is held back the second time though it was granted the first: never a
        grant beyond the budget."""
        if self.ledgers is None:
            return []
        saves = []
        for partition, ledger in self.ledgers.by_partition.items():
            record = self.context.get(partition)
            if ledger.unsaved and partition in kept and record is not None:
                saves.append((partition, record, ledger_key(partition), ledger.to_json()))
                ledger.unsaved = False
        return saves

    # ---- policy switch (engine/stream/switch.py) -----------------------------------------------------------------

    def _switch_some(self, stream: RecordStream) -> None:
        """Re-evaluate the next customers of the partitions being switched, as the rate limit allows, at most
        `CHUNK` a batch (the next batch asked for at once when that was the limit); only those it changed are kept."""
        switch, left = self.switch, CHUNK
        for partition in sorted(switch.pending):
            record = self.context.get(partition)
            if record is None:
                continue  # a partition's states are written under one of its records: its next tick brings one
            pending = switch.pending[partition]
            ledger = self._ledger(partition)
            while pending.left and left > 0 and switch.allowed() > 0:
                customer_id = pending.left.pop()
                left -= 1
                state = self.states.peek(stream, record, customer_id)
                if state is None:
                    continue  # erased since it was counted
                before, due = state.encode(), state.due
                outcome = switch_in_place(state, self.policy, ledger)
                granted = sum(decision.type == "perk.granted" for decision in outcome.emitted)
                if outcome.emitted or outcome.suppressed or state.encode() != before:
                    self.effects.record(record, partition, customer_id, outcome, due)
                    pending.switched += 1
                pending.granted += granted
                switch.granted += granted
                self.metrics.switch_customers.inc()
            if not pending.left:
                switch.done(partition)
        if switch.under_way and left <= 0:
            self.effects.send(self.channels.internal, None, records.encode(records.Tick()), min(switch.pending))

    def _versions_to_save(self, kept: set[int]) -> list[tuple[int, Any, bytes, bytes]]:
        """The policy versions to keep with this batch (`PolicySwitch.versions_to_write`), under a record of each."""
        saves = []
        for partition, key, version in self.switch.versions_to_write():
            record = self.context.get(partition)
            if partition in kept and record is not None:
                saves.append((partition, record, key, version))
        return saves

    # ---- audiences (the web page /audiences, engine/stream/web.py) -----------------------------------------------

    def customers_of(self, partitions: list[int], after: str | None = None) -> list[str]:
        """The ids of the customers of `partitions` (those counted there, `OwnedPartition.placed`), after `after`, in
        id order: the page reads and filters their states one by one (`customer`), pausing between reads. Raises
        NotOwnedHere unless this worker owns every one of them and has learned its customers (a rebalance)."""
        owned = set(self.owned_partitions())
        missing = sorted(p for p in partitions if p not in owned or p not in self.partitions)
        if missing:
            raise NotOwnedHere(f"partitions {missing} are not owned by this worker (or not learned yet)")
        return sorted(c for p in partitions for c in self.partitions[p].placed if after is None or c > after)


async def _stop(stream: RecordStream, message: str) -> None:
    """Stop the worker on what it cannot go on with, saying why in one line (logged, and the process's exit message):
    Faust's app is crashed, and its worker stops with a non-zero exit. Not an exception of the agent's: Faust would
    only restart the agent, to meet the same table again. (A stream without an app, in the tests: raised.)"""
    log.error("%s", message)
    app = getattr(stream, "app", None)
    if app is None:
        raise SystemExit(message)
    await app.crash(SystemExit(message))
