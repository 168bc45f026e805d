"""The worker reads every record of a partition: records Faust skipped are read again, in order."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP

import engine.stream.faust_fixes.continuity
from engine.stream.faust_fixes.continuity import Continuity

TOPIC = TP("purchases", 0)


@dataclass
class Message:
    offset: int
    tp: TP = TOPIC


@dataclass
class FakeConsumer:
    """Faust's consumer as far as Continuity uses it: its gap rule and its thread-safe seek."""

    seeks: list[tuple[TP, int]] = field(default_factory=list)
    gaps: list[tuple[TP, int, int]] = field(default_factory=list)

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        self.gaps.append((tp, offset_from, offset_to))

    async def seek_wait(self, partitions: dict[TP, int]) -> None:
        self.seeks.extend(partitions.items())


def read(continuity: Continuity, *offsets: int) -> list[int]:
    return [offset for offset in offsets if continuity.admit(Message(offset))]


def test_faust_gap_rule_is_off() -> None:
    consumer = FakeConsumer()
    Continuity(consumer)
    asyncio.run(consumer._add_gap(TOPIC, 5, 9))
    assert consumer.gaps == []  # records Faust did not hand over are not counted as done


def test_records_in_order_and_copies_are_processed() -> None:
    continuity = Continuity(FakeConsumer())
    continuity.start(TOPIC, 10)
    assert read(continuity, 10, 11, 12, 10, 11, 13, 14) == [10, 11, 12, 10, 11, 13, 14]
    assert not continuity.missing


def test_a_jump_is_skipped_and_the_partition_read_again_from_the_first_missing_record() -> None:
    consumer = FakeConsumer()
    continuity = Continuity(consumer)
    continuity.start(TOPIC, 100)
    assert read(continuity, 108, 109, 110) == []  # 100..107 were skipped by Faust
    asyncio.run(continuity.read_again())
    assert consumer.seeks == [(TOPIC, 100)] and not continuity.missing
    assert read(continuity, 111, 100, 101) == [100, 101]  # one still in flight, then the records read again
    assert read(continuity, *range(102, 112)) == list(range(102, 112))


def test_offsets_that_never_come_are_taken_as_a_marker_or_as_gone_after_enough_seeks_and_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [100.0]
    monkeypatch.setattr(engine.stream.faust_fixes.continuity.time, "monotonic", lambda: clock[0])
    consumer = FakeConsumer()
    continuity = Continuity(consumer)
    continuity.start(TOPIC, 0)
    continuity.start(TP("purchases", 1), 0)
    marker, gone = TOPIC, TP("purchases", 1)
    admitted = []
    for _ in range(30):  # offset 0 never comes on either partition
        admitted.append(continuity.admit(Message(1, marker)))
        assert not continuity.admit(Message(40, gone))
        asyncio.run(continuity.read_again())
        clock[0] += 0.5
    # a one-offset jump: 3 seeks and 2 s, then taken as a transaction marker; a larger one: 20 seeks and 30 s
    assert admitted == [False] * 5 + [True] * 25
    assert consumer.seeks.count((marker, 0)) == 4 and consumer.seeks.count((gone, 0)) == 30
    assert consumer.gaps == [(marker, 0, 0)]  # Faust's own gap rule counts it as done: commits go on
    clock[0] += 30
    assert not continuity.admit(Message(40, gone))
    asyncio.run(continuity.read_again())
    assert consumer.gaps == [(marker, 0, 0), (gone, 0, 39)]
    assert continuity.admit(Message(40, gone))


def test_offsets_the_consumer_read_past_are_no_gap_to_read_again() -> None:
    @dataclass
    class Reading(FakeConsumer):
        """The consumer as `faust_fixes.isolation` leaves it: it tells which offsets it read past."""

        def read_past(self, tp: TP, start: int, stop: int) -> bool:
            return (start, stop) == (3, 8)  # a commit marker at 3, an aborted transaction and its marker at 4..7

    consumer = Reading()
    continuity = Continuity(consumer)
    continuity.start(TOPIC, 0)
    assert read(continuity, 0, 1, 2, 8, 9) == [0, 1, 2, 8, 9]  # admitted at once: nothing was skipped
    assert not continuity.missing and consumer.seeks == []
    assert read(continuity, 11) == []  # a gap the consumer cannot explain is still read again
    assert continuity.missing == {TOPIC: 11}


def test_partitions_given_away_are_forgotten() -> None:
    continuity = Continuity(FakeConsumer())
    continuity.start(TOPIC, 5)
    continuity.start(TP("purchases", 1), 7)
    continuity.forget([1])
    assert continuity.due == {TP("purchases", 1): 7}


def test_an_input_with_records_left_that_hands_none_over_is_read_again(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(engine.stream.faust_fixes.continuity.time, "monotonic", lambda: clock[0])
    consumer = FakeConsumer()
    continuity = Continuity(consumer)
    continuity.start(TOPIC, 7)
    clock[0] += engine.stream.faust_fixes.continuity.STALL_SECONDS / 2
    continuity.waiting(TOPIC, 7)
    assert not continuity.stalled  # not for long yet
    clock[0] += engine.stream.faust_fixes.continuity.STALL_SECONDS
    continuity.waiting(TOPIC, 7)
    asyncio.run(continuity.read_again())
    assert consumer.seeks == [(TOPIC, 7)]
    continuity.waiting(TOPIC, 7)
    assert not continuity.stalled  # the clock starts again after a seek


def test_with_the_consumer_s_report_a_jump_is_never_guessed_to_be_a_marker_and_only_deleted_records_are_passed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under CPU load the records fetched before a seek back kept coming for seconds: a one-offset jump was taken as
    a transaction marker after 3 seeks and 2 s, and the record applied late when it came (issue 18)."""
    clock = [100.0]
    monkeypatch.setattr(engine.stream.faust_fixes.continuity.time, "monotonic", lambda: clock[0])

    @dataclass
    class Reading(FakeConsumer):
        earliest: int = 0  # the partition's earliest offset kept

        def read_past(self, tp: TP, start: int, stop: int) -> bool:
            return False  # no marker: the consumer read past nothing

        async def earliest_offsets(self, *tps: TP) -> dict[TP, int]:
            return {tp: self.earliest for tp in tps}

    consumer = Reading()
    continuity = Continuity(consumer)
    continuity.start(TOPIC, 0)
    for _ in range(80):  # offset 0 does not come for 40 s: still there (earliest 0), so it is read again
        assert not continuity.admit(Message(1))
        asyncio.run(continuity.read_again())
        clock[0] += 0.5
    assert consumer.gaps == [] and consumer.seeks == [(TOPIC, 0)] * 80
    consumer.earliest = 1  # retention deleted it before it was read
    for _ in range(80):
        if continuity.admit(Message(1)):
            break
        asyncio.run(continuity.read_again())
        clock[0] += 0.5
    assert consumer.gaps == [(TOPIC, 0, 0)]  # counted as done only once it is known to be gone
    assert continuity.admit(Message(2))


def test_a_partition_with_no_committed_offset_is_read_from_its_earliest_offset_not_from_its_first_record() -> None:
    """Faust may hand over a later record first (the race this module corrects): taken as where reading starts, the
    records before it were never read again in that run (issue 18)."""

    @dataclass
    class Earliest(FakeConsumer):
        asked: list[tuple[TP, ...]] = field(default_factory=list)

        async def earliest_offsets(self, *tps: TP) -> dict[TP, int]:
            self.asked.append(tps)
            return {tp: 3 for tp in tps}

    consumer = Earliest()
    continuity = Continuity(consumer)
    continuity.start(TOPIC, None)
    assert continuity.unknown == {TOPIC}
    asyncio.run(continuity.settle_starts())
    assert consumer.asked == [(TOPIC,)] and not continuity.unknown
    assert read(continuity, 7, 8) == []  # 3..6 come first
    asyncio.run(continuity.read_again())
    assert consumer.seeks == [(TOPIC, 3)]
    assert read(continuity, 3, 4, 5, 6, 7) == [3, 4, 5, 6, 7]


def test_without_earliest_offsets_the_first_record_read_sets_where_reading_starts() -> None:
    continuity = Continuity(FakeConsumer())
    continuity.start(TOPIC, None)
    asyncio.run(continuity.settle_starts())
    assert not continuity.unknown
    assert read(continuity, 7, 8) == [7, 8]


def test_where_reading_resumes_is_the_broker_s_committed_offset_not_faust_s_record_of_it() -> None:
    """Faust's record of the committed offsets may be missing or stale in the first batch after an assignment (it
    is still seeking): the broker is asked, in the consumer's thread (issue 18)."""

    class Thread:
        def __init__(self) -> None:
            self.calls: list[Any] = []

        def _ensure_consumer(self) -> Any:
            async def committed(tp: Any) -> int | None:
                return {("purchases", 0): 12}.get((tp.topic, tp.partition))

            return SimpleNamespace(committed=committed)

        async def call_thread(self, method: Any, *args: Any) -> Any:
            self.calls.append(args)
            return await method(*args)

    @dataclass
    class Asking(FakeConsumer):
        _thread: Thread = field(default_factory=Thread)

        async def earliest_offsets(self, *tps: TP) -> dict[TP, int]:
            return {tp: 2 for tp in tps}

    consumer = Asking()
    continuity = Continuity(consumer)
    other = TP("purchases", 1)
    continuity.start(TOPIC, 9)  # Faust's record: stale
    continuity.start(other, None)  # Faust's record: missing
    asyncio.run(continuity.settle_starts())
    assert continuity.due == {TOPIC: 12, other: 2} and not continuity.unknown  # committed; none: the earliest kept
    assert len(consumer._thread.calls) == 2
