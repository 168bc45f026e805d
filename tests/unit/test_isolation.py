"""Committed records only (engine/stream/faust_fixes/isolation.py): transaction markers and aborted records, which
the consumer reads past without handing them over, hold nothing back; the end of a partition is its last stable
offset. On the real broker, with a transactional producer: tests/integration/test_transactions.py."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.consumer.fetcher import OffsetResetStrategy
from aiokafka.consumer.subscription_state import SubscriptionState
from aiokafka.structs import TopicPartition
from faust.types import TP

from engine.settings import load_settings
from engine.stream.app import create_app
from engine.stream.faust_fixes.isolation import CommittedReads
from engine.stream.inputs import Inputs
from tests.unit.loyalty_builders import purchase
from tests.unit.stream_fakes import FakeConsumer, Harness

pytestmark = pytest.mark.unit

PURCHASES, FEEDBACK, CUSTOMERS = "purchases", "feedback", "customers"
TOPIC = TP(PURCHASES, 0)


# ---- the drained rule (engine.stream.inputs) ------------------------------------------------------------------


def reading(end: int, read_up_to: int | None, skipped: tuple[int, int] | None) -> Inputs[str]:
    """The inputs of partition 0 of one topic whose end is `end`, read up to offset `read_up_to`, and what the
    consumer says it read past."""
    consumer = FakeConsumer(highwaters={TOPIC: end}, skips={} if skipped is None else {TOPIC: skipped})
    inputs: Inputs[str] = Inputs(consumer, [PURCHASES])
    inputs.follow([0])
    if read_up_to is not None:
        inputs.read(TOPIC, read_up_to)
    return inputs


def test_a_partition_ending_with_a_transaction_marker_is_drained_once_the_consumer_has_read_past_it() -> None:
    # records 0..4, their transaction's commit marker at 5: the end is 6
    assert reading(6, 4, None).remaining(TOPIC) == 1  # by offsets alone the marker looks like a record
    drained = reading(6, 4, (5, 6))  # the consumer handed over nothing from 5 on and has read up to 6
    assert drained.drained((PURCHASES, 0)) and drained.remaining(TOPIC) == 0
    assert drained.lag([0]) == [(PURCHASES, 0, 0)]  # no lag reported for a marker


def test_aborted_records_at_the_end_of_a_partition_are_nothing_to_wait_for() -> None:
    # records 0..4 committed (marker at 5), 6..9 aborted (marker at 10)
    assert reading(11, 4, (5, 11)).drained((PURCHASES, 0))


def test_records_handed_over_but_not_read_yet_are_waited_for() -> None:
    # the consumer handed over record 7 and read past the marker at 8; the worker has read up to 4 only
    inputs = reading(9, 4, (8, 9))
    assert not inputs.drained((PURCHASES, 0))
    assert inputs.remaining(TOPIC) == 4


def test_a_partition_the_consumer_has_not_read_to_its_end_yet_is_waited_for() -> None:
    assert not reading(9, 4, (5, 7)).drained((PURCHASES, 0))  # offsets 7 and 8 are not read yet


def test_after_a_restart_reading_resumes_before_the_marker_that_ends_the_partition() -> None:
    # the group committed 5 (after record 4); the commit marker at 5 ends the partition; nothing handed over since
    inputs = reading(6, None, (0, 6))
    inputs.resume(TOPIC, 5)
    assert inputs.drained((PURCHASES, 0))


def test_without_word_of_what_the_consumer_read_past_a_marker_counts_as_a_record() -> None:
    @dataclass
    class Ends:
        def highwater(self, tp: TP) -> int | None:
            return 6

    inputs: Inputs[str] = Inputs(Ends(), [PURCHASES])
    inputs.read(TOPIC, 4)
    assert inputs.remaining(TOPIC) == 1


def test_an_event_goes_past_a_partition_holding_only_an_aborted_transaction() -> None:
    h = Harness()
    h.hold(CUSTOMERS, 0, records_left=3)  # three offsets: two aborted records and their abort marker
    bought = purchase("c-1", 1)
    h.run(h.event(PURCHASES, bought))
    assert h.processor.inputs.merge.pending() == 1  # it waits: customers may still hold an earlier event

    h.consumer.skips[TP(CUSTOMERS, 0)] = (0, 3)  # the consumer read past all three, handing nothing over
    h.run()
    assert h.processor.inputs.merge.pending() == 0
    assert h.stream.offsets(PURCHASES) == [(PURCHASES, 0, 0)]


# ---- what the consumer read past (engine.stream.faust_fixes.isolation) --------------------------------------------


@dataclass
class Record:
    offset: int


class FakeAiokafka:
    """aiokafka's consumer as far as the correction uses it: its partitions' real states, their LSO and highwater."""

    def __init__(self) -> None:
        self._subscription = SubscriptionState()
        self._isolation_level = "read_uncommitted"

    def assign(self, *tps: TP) -> None:
        self._subscription.assign_from_user([TopicPartition(*tp) for tp in tps])

    def state(self, tp: TP) -> Any:
        return self._subscription.subscription.assignment.state_value(TopicPartition(*tp))

    def highwater(self, tp: TP) -> int | None:
        return self.state(tp).highwater  # type: ignore[no-any-return]

    def last_stable_offset(self, tp: TP) -> int | None:
        return self.state(tp).lso  # type: ignore[no-any-return]


class FakeThread:
    """Faust's aiokafka consumer thread: makes the consumer, fetches (what `fetch` says), knows the app's loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._consumer: FakeAiokafka | None = None
        self.parent_loop = loop
        self.handing: dict[TP, tuple[list[int], int]] = {}  # the next fetch: offsets handed over, position after

    def _create_worker_consumer(self, transport: Any) -> FakeAiokafka:
        return FakeAiokafka()

    def _ensure_consumer(self) -> FakeAiokafka:
        assert self._consumer is not None
        return self._consumer

    def highwater(self, tp: TP) -> int | None:
        return self._ensure_consumer().highwater(tp)

    async def _fetch_records(
        self, made: FakeAiokafka, active: Any, timeout: Any = None, max_records: Any = None
    ) -> Any:
        records = {}
        for tp, (offsets, position) in self.handing.items():
            made.state(tp).consumed_to(position)
            if offsets:
                records[TopicPartition(*tp)] = [Record(offset) for offset in offsets]
        self.handing = {}
        return records


class FakeFaustConsumer:
    """Faust's consumer: its thread, and its gap rule (what it counts as done for commits)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._thread = FakeThread(loop)
        self.gaps: list[tuple[TP, int, int]] = []
        self.app = SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda topic: topic == PURCHASES))

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        self.gaps.append((tp, offset_from, offset_to))


async def started(committed: int = 0) -> tuple[FakeFaustConsumer, CommittedReads, FakeAiokafka]:
    """A consumer with the correction, started, assigned TOPIC and reading it from `committed`."""
    consumer = FakeFaustConsumer(asyncio.get_running_loop())
    reads = CommittedReads(consumer)
    made = consumer._thread._consumer = consumer._thread._create_worker_consumer(None)
    made.assign(TOPIC)
    made.state(TOPIC).seek(committed)
    return consumer, reads, made


async def fetch(consumer: FakeFaustConsumer, offsets: list[int], position: int) -> None:
    consumer._thread.handing[TOPIC] = (offsets, position)
    await consumer._thread._fetch_records(consumer._thread._ensure_consumer(), None, timeout=1.0)
    for _ in range(3):
        await asyncio.sleep(0)  # the gaps are counted in the app's loop


def test_the_consumer_reads_committed_records_and_ends_at_the_last_stable_offset() -> None:
    async def scenario() -> tuple[str, int | None, int | None]:
        consumer, _, made = await started()
        state = made.state(TOPIC)
        state.highwater, state.lso = 20, 12  # a transaction still open from offset 12 on
        open_transaction = consumer._thread.highwater(TOPIC)  # what Faust's consumer asks its thread
        state.lso = None  # not known (no fetch answered yet, or a broker without transactions): the highwater
        return made._isolation_level, open_transaction, consumer._thread.highwater(TOPIC)

    assert asyncio.run(scenario()) == ("read_committed", 12, 20)


def test_what_the_consumer_read_past_is_known_and_counted_as_done_for_commits() -> None:
    async def scenario() -> tuple[list[Any], Any, Any, list[bool]]:
        consumer, reads, _ = await started(committed=0)
        await fetch(consumer, [0, 1, 2], 3)
        assert reads.skipped(TOPIC) == (3, 3)
        # a commit marker at 3, an aborted transaction at 4..6 and its marker at 7, then record 8 and a marker at 9
        await fetch(consumer, [8], 10)
        return (
            consumer.gaps,
            reads.skipped(TOPIC),
            consumer.read_past,  # type: ignore[attr-defined]
            [reads.read_past(TOPIC, 3, 8), reads.read_past(TOPIC, 2, 8), reads.read_past(TOPIC, 3, 9)],
        )

    gaps, skipped, installed, answers = asyncio.run(scenario())
    assert gaps == [(TOPIC, 3, 7)]  # offsets 3..7: markers and aborted records, never to be acknowledged
    assert skipped == (9, 10)  # nothing handed over from 9 on, read up to 10: the marker at 9 is all that is left
    assert answers == [True, False, False]  # 2 was a record; 9 was not handed over after a gap
    assert installed is not None


def test_gaps_in_a_table_s_changelog_are_left_to_its_restore() -> None:
    changelog = TP("app-customers-changelog", 0)  # compacted: its gaps are deleted records; Faust acknowledges none

    async def scenario() -> tuple[list[Any], bool]:
        consumer, reads, made = await started()
        made.assign(changelog)
        made.state(changelog).seek(0)
        consumer._thread.handing[changelog] = ([0, 4], 5)
        await consumer._thread._fetch_records(made, None)
        await asyncio.sleep(0)
        return consumer.gaps, reads.read_past(changelog, 1, 4)

    assert asyncio.run(scenario()) == ([], True)


def test_records_read_again_after_a_seek_back_are_no_gap() -> None:
    async def scenario() -> tuple[list[Any], tuple[int, int] | None]:
        consumer, reads, made = await started(committed=0)
        await fetch(consumer, [0, 1, 2, 3], 4)
        made.state(TOPIC).seek(1)  # read again from 1 (faust_fixes.continuity)
        await fetch(consumer, [1, 2, 3], 4)
        return consumer.gaps, reads.skipped(TOPIC)

    assert asyncio.run(scenario()) == ([], (4, 4))


def test_a_seek_forward_after_a_seek_back_is_no_gap_read_past() -> None:
    """The crash test's lost order (issue 18): continuity sought back, then Faust sought forward to the committed
    offset; the jump between was counted as read past, and a record Faust skipped there later was admitted late."""

    async def scenario() -> tuple[list[Any], bool, bool]:
        consumer, reads, made = await started(committed=0)
        await fetch(consumer, [0, 1, 2, 3], 4)
        made.state(TOPIC).seek(1)  # read again from 1 (faust_fixes.continuity)
        await fetch(consumer, [1, 2], 3)
        made.state(TOPIC).seek(6)  # Faust seeks to the committed offset (a rebalance that kept the partition)
        await fetch(consumer, [6, 7], 8)
        return consumer.gaps, reads.read_past(TOPIC, 3, 6), reads.read_past(TOPIC, 5, 6)

    gaps, from_3, from_5 = asyncio.run(scenario())
    assert gaps == []  # offsets 3..5 were never read: nothing to count as done
    assert not from_3 and not from_5  # a record skipped before 6 is read again, not admitted after it


def test_the_first_fetch_of_an_assignment_before_any_seek_claims_no_gap() -> None:
    async def scenario() -> tuple[list[Any], bool]:
        consumer, reads, made = await started(committed=0)
        made.assign(TOPIC)  # a new state, positioned by aiokafka's reset, no seek: where reading began is not known
        made.state(TOPIC).await_reset(OffsetResetStrategy.EARLIEST)
        made.state(TOPIC).reset_to(7)
        await fetch(consumer, [7, 8], 9)
        return consumer.gaps, reads.read_past(TOPIC, 0, 7)

    assert asyncio.run(scenario()) == ([], False)


def test_a_new_assignment_begins_where_reading_resumes() -> None:
    async def scenario() -> tuple[Any, Any, Any, bool]:
        consumer, reads, made = await started(committed=0)
        await fetch(consumer, [0, 1], 2)
        made.assign(TOPIC)  # a rebalance: a new state, reading resumes at the committed offset, 5 (a marker)
        before = reads.skipped(TOPIC)  # what was known of the old assignment no longer holds
        made.state(TOPIC).seek(5)
        await fetch(consumer, [], 6)
        after = reads.skipped(TOPIC)
        await fetch(consumer, [6], 7)
        return before, after, reads.skipped(TOPIC), reads.read_past(TOPIC, 5, 6)

    before, after, later, vouched = asyncio.run(scenario())
    assert before is None
    assert after == (5, 6)  # nothing handed over in this assignment from where it sought, read up to 6
    assert later == (7, 7)
    assert vouched  # the marker at 5, where this assignment began reading


def test_the_app_s_consumer_is_made_with_read_committed_and_processing_stays_at_least_once(tmp_path: Path) -> None:
    app = create_app(load_settings({"ESCALERA_TABLE_STORE": "memory", "ESCALERA_DATA_DIR": str(tmp_path)})).app
    assert str(app.conf.processing_guarantee.value) == "at_least_once"
    consumer: Any = app.consumer
    assert not consumer.in_transaction  # Faust commits as at-least-once

    async def made() -> str:
        aiokafka_consumer = consumer._thread._create_worker_consumer(app.transport)
        await aiokafka_consumer.stop()
        return str(aiokafka_consumer._isolation_level)

    assert asyncio.run(made()) == "read_committed"
    assert callable(consumer.skipped) and callable(consumer.read_past)


def test_the_broker_s_resume_point_replaces_faust_s_until_a_record_is_read() -> None:
    """Faust's record of the committed offsets was missing in the first batch after an assignment: a partition
    committed to its end then looked as if it held every record from offset 0, and the merge waited for it forever
    (tests/reliability/test_crash.py, issue 18). The broker's answer replaces it; a record read is never undone."""

    @dataclass
    class Ends:
        def highwater(self, tp: TP) -> int | None:
            return 6

    inputs: Inputs[str] = Inputs(Ends(), [PURCHASES])
    inputs.resume(TOPIC, None)  # Faust's record: missing
    assert inputs.remaining(TOPIC) == 6
    inputs.resume(TOPIC, 6)  # the broker: committed to the end
    assert inputs.drained((PURCHASES, 0))
    other = TP(PURCHASES, 1)
    inputs.resume(other, 2)  # Faust's record: stale
    inputs.resume(other, 4)  # the broker's
    assert inputs.remaining(other) == 2
    inputs.read(other, 4)
    inputs.resume(other, 3)  # too late: a record was read
    assert inputs.remaining(other) == 1
