"""The worker reads every record of a partition: records Faust skipped are read again, in order."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

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
