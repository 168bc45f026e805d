"""The worker reads only committed records (isolation level read_committed), its processing staying at-least-once,
and knows which offsets its consumer read past without handing a record over: transaction markers and aborted records.

Shops publish through transactional producers (outbox and change-data-capture tools). Faust reads committed records
only under `processing_guarantee="exactly_once"` (`AIOKafkaConsumerThread._create_worker_consumer` in
faust/transport/drivers/aiokafka.py: `if self.consumer.in_transaction: isolation_level = "read_committed"`), which
Escalera does not use (its open bugs, faust-streaming #517 among them): the records of an aborted transaction would
be applied as if they had happened. So the worker's aiokafka consumer is made with read_committed, and:

- A partition is readable only up to its last stable offset (LSO), the first record of a transaction still open.
  Faust's `highwater(tp)` gives the LSO only under exactly_once too (`AIOKafkaConsumerThread.highwater`, same file);
  here it always does, as Kafka clients count lag under read_committed (librdkafka's `consumer_lag`): waiting for
  the records of an open transaction would hold back every other input until its producer commits.
- Transaction markers (one offset per commit or abort) and aborted records are never handed over, so a partition
  whose last offsets are markers never looks read to its end by counting offsets. aiokafka moves its fetch position
  past them: `skipped(tp)` says from which offset on the consumer has handed over no record and how far it has
  read since (`engine.stream.inputs.Inputs.remaining` uses it).
- A record handed over after such offsets comes after a gap in the offsets. `read_past(tp, start, stop)` says
  whether the consumer read past `start`..`stop - 1` just before handing over `stop`: a gap of that kind, not
  records Faust dropped, which `faust_fixes.continuity` reads again. Those offsets go to Faust's gap rule (which
  continuity switches off), so that commits go on past them.
- A gap is counted only from where reading really went on: after the last record handed over, or from the offset
  of the last seek (`TopicPartitionState.seek`, marked by `mark_seeks`), and never at the first fetch of an
  assignment before any seek (where reading began is not known then). Counted across a seek, a seek forward
  (Faust seeks to the committed offsets when a partition is assigned, while continuity may have sought back) made a
  gap of records that were never read: a record Faust skipped later at the same place was taken as read past,
  applied after later ones, and the state differed from the replay (tests/reliability/test_crash.py, 3 runs in 4
  under CPU load, issue 18).

Tested on the real broker with a transactional producer by tests/integration/test_transactions.py; the offsets
arithmetic by tests/unit/test_isolation.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from faust.types import TP

READ_COMMITTED = "read_committed"
KEPT = 10_000  # records after a gap remembered per partition (for `read_past`), the latest ones
SOUGHT = "_escalera_sought"  # the attribute `mark_seeks` sets on aiokafka's state of a partition: its last seek


def mark_seeks() -> None:
    """Make aiokafka's partition state remember the offset of its last seek (every seek of aiokafka's consumer,
    `seek` and `seek_to_committed`, ends in `TopicPartitionState.seek`), until `CommittedReads.fetched` reads it.
    Installed once per process; it changes nothing else."""
    from aiokafka.consumer.subscription_state import TopicPartitionState

    seek = TopicPartitionState.seek
    if getattr(seek, "marks_seeks", False):
        return

    def marked_seek(self: Any, position: int) -> None:
        seek(self, position)
        setattr(self, SOUGHT, position)

    marked_seek.marks_seeks = True  # type: ignore[attr-defined]
    TopicPartitionState.seek = marked_seek


class CommittedReads:
    """Installed on Faust's aiokafka consumer (before it starts): read_committed, the LSO as its end, and what it read
    past without handing a record over."""

    def __init__(self, consumer: Any) -> None:
        mark_seeks()
        self.consumer, self.thread = consumer, (thread := consumer._thread)  # Faust runs aiokafka in its own thread
        self.faust_gap = consumer._add_gap  # Faust's gap rule, taken before `faust_fixes.continuity` turns it off
        # per topic partition: aiokafka's state of it (a new one at each assignment), the offset after the last record
        # handed over (0: none in this assignment), and the fetch position; written in the consumer's thread, after
        # each fetch, as one tuple
        self.runs: dict[TP, tuple[Any, int, int]] = {}
        self.gaps: dict[TP, dict[int, int]] = {}  # per topic partition: record handed over after a gap -> gap start
        create, fetch, highwater = thread._create_worker_consumer, thread._fetch_records, thread.highwater

        def create_worker_consumer(transport: Any) -> Any:
            made = create(transport)
            made._isolation_level = READ_COMMITTED  # what aiokafka's fetcher is given when the consumer starts
            return made

        async def fetch_records(made: Any, active: Any, timeout: float | None = None, max_records: Any = None) -> Any:
            records = await fetch(made, active, timeout=timeout, max_records=max_records)
            self.fetched(made, records)
            return records

        def last_stable_offset(tp: TP) -> int | None:
            lso: int | None = thread._ensure_consumer().last_stable_offset(tp)
            return lso if lso is not None and lso >= 0 else highwater(tp)

        thread._create_worker_consumer = create_worker_consumer
        thread._fetch_records = fetch_records
        thread.highwater = last_stable_offset  # Faust's consumer asks its thread
        consumer.skipped, consumer.read_past = self.skipped, self.read_past

    def fetched(self, made: Any, records: Mapping[Any, Sequence[Any]]) -> None:
        """After a fetch (in the consumer's thread): where each partition's reading stands, and the gaps before the
        records handed over."""
        for tp, state in assigned(made).items():
            if not state.has_valid_position:
                continue
            run = self.runs.get(tp)
            sought = getattr(state, SOUGHT, None)
            start: int | None
            if sought is not None:  # reading went on from a seek (records of this fetch were fetched after it)
                setattr(state, SOUGHT, None)
                start = sought
            elif run is not None and run[0] is state:  # after the last record handed over
                start = run[1]
            else:  # the first fetch of this assignment, before any seek: where reading began is not known
                start = None
            for record in records.get(tp, ()):
                if start is not None and record.offset > start:
                    self.gap(tp, start, record.offset)
                start = record.offset + 1
            # none handed over yet in this assignment, nor sought: it began reading at the committed offset (Faust
            # seeks there), or at the earliest offset kept when there is none
            self.runs[tp] = (state, 0 if start is None else start, state.position)

    def gap(self, tp: TP, start: int, stop: int) -> None:
        """The consumer read past `start`..`stop - 1` and handed over the record at `stop`: remember it, and count
        those offsets as done for Faust's commits of the topics it acknowledges (in Faust's own loop, as Faust's
        `_drain_messages` does; offsets already committed are left out)."""
        found = self.gaps.setdefault(tp, {})
        found[stop] = start
        if len(found) > KEPT:
            del found[next(iter(found))]
        if self.consumer.app.topics.acks_enabled_for(tp.topic):  # not the tables' changelogs, read to restore
            asyncio.run_coroutine_threadsafe(self.faust_gap(tp, start, stop - 1), self.thread.parent_loop)

    def skipped(self, tp: TP) -> tuple[int, int] | None:
        """(start, stop): the consumer has handed over no record of `tp` from `start` on and has read it up to `stop`,
        so the offsets in between are transaction markers, aborted records, or before where this assignment began
        reading (None: not known)."""
        run = self.runs.get(tp)
        made = self.thread._consumer
        if run is None or made is None or state_of(made, tp) is not run[0]:
            return None
        return run[1], run[2]

    def read_past(self, tp: TP, start: int, stop: int) -> bool:
        """Whether the consumer handed over the record at `stop` of `tp` right after reading past every offset from
        `start` on (markers and aborted records), so that no record between was handed over."""
        found = self.gaps.get(tp, {}).get(stop)
        return found is not None and found <= start


def assignment_of(made: Any) -> Any:
    """The current assignment of aiokafka's consumer `made` (None: none)."""
    subscription = made._subscription.subscription
    return None if subscription is None else subscription.assignment


def assigned(made: Any) -> dict[TP, Any]:
    """aiokafka's state of each topic partition assigned to its consumer `made`."""
    assignment = assignment_of(made)
    if assignment is None:
        return {}
    return {TP(tp.topic, tp.partition): assignment.state_value(tp) for tp in assignment.tps}


def state_of(made: Any, tp: TP) -> Any:
    """aiokafka's state of one topic partition (None: not assigned)."""
    assignment = assignment_of(made)
    return None if assignment is None else assignment.state_value(tp)


def read_committed(app: Any) -> None:
    """Make the app's consumer read committed records only (call before the consumer is first used)."""
    new_consumer = app._new_consumer

    def consumer() -> Any:
        made = new_consumer()
        CommittedReads(made)
        return made

    app._new_consumer = consumer
