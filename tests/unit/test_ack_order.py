"""Records are acknowledged in offset order per partition, whatever order they finish in; a commit waits for
every record queued before it."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from faust.types import TP
from hypothesis import given
from hypothesis import strategies as st

from engine.stream.faust_fixes.ack_order import AckOrder
from engine.stream.faust_fixes.delivery import DeliveryCount


def record(topic: str, partition: int, offset: int) -> Any:
    return SimpleNamespace(message=SimpleNamespace(tp=TP(topic, partition), offset=offset, partition=partition))


@given(st.lists(st.tuples(st.sampled_from(["purchases", "feedback"]), st.integers(0, 1)), max_size=40), st.randoms())
def test_a_record_is_acknowledged_only_after_every_earlier_record_of_its_partition(
    reads: list[tuple[str, int]], rng: Any
) -> None:
    acks = AckOrder()
    offsets: dict[tuple[str, int], int] = {}
    records = []
    for topic, partition in reads:
        offset = offsets.setdefault((topic, partition), 0)
        offsets[(topic, partition)] += 1
        records.append(record(topic, partition, offset))
        acks.read(records[-1])
    rng.shuffle(records)  # they finish in any order
    finished: set[tuple[TP, int]] = set()
    acknowledged: dict[TP, list[int]] = {}
    for event in records:
        acks.finish(event)
        finished.add((event.message.tp, event.message.offset))
        for done in acks.ready():
            tp, offset = done.message.tp, done.message.offset
            assert all((tp, earlier) in finished for earlier in range(offset))  # nothing earlier still open
            acknowledged.setdefault(tp, []).append(offset)
    # in the end every record is acknowledged once, in offset order
    assert {tp: offs for tp, offs in acknowledged.items()} == {
        TP(t, p): list(range(n)) for (t, p), n in offsets.items()
    }
    assert acks.waiting() == 0


def test_partitions_given_away_are_forgotten() -> None:
    acks = AckOrder()
    first, second = record("purchases", 0, 0), record("purchases", 1, 0)
    acks.read(first)
    acks.read(second)
    acks.forget([1])
    acks.finish(second)
    assert list(acks.ready()) == [second] and acks.waiting() == 0


class SlowBuffer:
    """A producer buffer like Faust's: records put in a queue, handed over one at a time, `pace` seconds each."""

    def __init__(self, pace: float) -> None:
        self.pace, self.state = pace, "running"
        self.pending: asyncio.Queue[int] = asyncio.Queue()
        self.message_sent = asyncio.Event()
        self.handed_over: list[int] = []

    def put(self, record: int) -> None:
        self.pending.put_nowait(record)

    async def run(self) -> None:
        while True:
            record = await self.pending.get()
            await asyncio.sleep(self.pace)
            self.handed_over.append(record)
            self.message_sent.set()


def test_a_commit_waits_for_every_record_queued_before_it_however_slow_the_broker() -> None:
    async def scenario() -> tuple[list[int], list[int]]:
        buffer = SlowBuffer(pace=0.15)  # slower than the 0.1 s Faust's own flush waits
        count = DeliveryCount(buffer)
        sender = asyncio.create_task(buffer.run())
        for record in range(4):
            buffer.put(record)
        flushing = asyncio.create_task(count.flush())
        await asyncio.sleep(0.05)
        buffer.put(99)  # queued after the flush began: not waited for
        await flushing
        at_flush_end = list(buffer.handed_over)
        await asyncio.sleep(0.3)
        sender.cancel()
        return at_flush_end, buffer.handed_over

    at_flush_end, finally_sent = asyncio.run(scenario())
    assert at_flush_end == [0, 1, 2, 3]
    assert finally_sent == [0, 1, 2, 3, 99]


def test_a_record_delivered_again_is_acknowledged_once_per_copy_in_order() -> None:
    acks = AckOrder()
    first = [record("purchases", 0, offset) for offset in range(3)]
    for event in first:
        acks.read(event)
    acks.finish(first[0])
    assert [e.message.offset for e in acks.ready()] == [0]
    again = [record("purchases", 0, offset) for offset in range(1, 3)]  # Faust seeks back to 1
    for event in again:
        acks.read(event)
    for event in (again[1], first[2], again[0]):
        acks.finish(event)
    assert list(acks.ready()) == [again[0], first[2]]  # offset 1 (the copy that finished), offset 2
    acks.finish(first[1])
    assert list(acks.ready()) == [first[1], again[1]] and acks.waiting() == 0
