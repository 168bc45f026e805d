"""faust_fixes.handover: a hand-over that does not suspend runs without tasks; one that blocks is still interrupted by
a suspended flow (a rebalance) or a stop, as with Faust's own `wait_first`, and finishes when it can."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from mode import Service

from engine.stream.faust_fixes.handover import direct_handover


def run(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """An async test run on its own event loop (the unit tier has no async plugin)."""

    @functools.wraps(test)
    def sync(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return sync


class Consumer(Service):
    """What `direct_handover` and Faust's `_drain_messages` use of a consumer: a mode service and its flow event."""

    def __init__(self) -> None:
        super().__init__()
        self.suspend_flow = asyncio.Event()
        self.faust_calls = 0
        faust_wait_first = self.wait_first

        async def counted(*coros: Any, timeout: Any = None) -> Any:
            self.faust_calls += 1
            return await faust_wait_first(*coros, timeout=timeout)

        self.wait_first = counted  # type: ignore[method-assign]
        direct_handover(self)

    async def hand_over(self, queue: asyncio.Queue[int], value: int) -> None:
        """As Faust's reader does it (`Consumer._drain_messages`)."""
        await self.wait_first(queue.put(value), self.suspend_flow.wait())


@run
async def test_a_hand_over_with_room_runs_directly_without_any_task() -> None:
    consumer, queue = Consumer(), asyncio.Queue[int](maxsize=10)
    tasks = len(asyncio.all_tasks())
    for value in range(5):
        await consumer.hand_over(queue, value)
    assert [queue.get_nowait() for _ in range(5)] == [0, 1, 2, 3, 4]
    assert consumer.faust_calls == 0
    assert len(asyncio.all_tasks()) == tasks


@run
async def test_a_blocked_hand_over_finishes_when_the_queue_drains() -> None:
    consumer, queue = Consumer(), asyncio.Queue[int](maxsize=1)
    await consumer.hand_over(queue, 1)
    handing = asyncio.create_task(consumer.hand_over(queue, 2))
    await asyncio.sleep(0.05)
    assert not handing.done()  # blocked on the full queue, waiting through Faust's wait_first
    assert consumer.faust_calls == 1
    assert queue.get_nowait() == 1
    await asyncio.wait_for(handing, 1)
    assert queue.get_nowait() == 2


@pytest.mark.parametrize("interruption", ["rebalance", "stop"])
@run
async def test_a_blocked_hand_over_is_interrupted_by_a_rebalance_or_a_stop(interruption: str) -> None:
    consumer, queue = Consumer(), asyncio.Queue[int](maxsize=1)
    await consumer.hand_over(queue, 1)
    handing = asyncio.create_task(consumer.hand_over(queue, 2))
    await asyncio.sleep(0.05)
    assert not handing.done()
    if interruption == "rebalance":
        consumer.suspend_flow.set()  # Consumer.stop_flow, at the start of a rebalance
    else:
        consumer._stopped.set()
    await asyncio.wait_for(handing, 1)  # returns without the record handed over
    await asyncio.sleep(0.01)
    assert queue.get_nowait() == 1
    assert queue.empty()  # the interrupted put was cancelled, not left to land later


@run
async def test_while_the_flow_is_suspended_faust_decides() -> None:
    consumer, queue = Consumer(), asyncio.Queue[int](maxsize=10)
    consumer.suspend_flow.set()
    await consumer.hand_over(queue, 1)
    assert consumer.faust_calls == 1


@run
async def test_an_error_in_the_hand_over_is_raised_either_way() -> None:
    consumer = Consumer()
    gate = asyncio.Event()

    async def failing(wait_first: bool) -> None:
        if wait_first:
            await gate.wait()
        raise ValueError("cannot decode")

    with pytest.raises(ValueError, match="cannot decode"):
        await consumer.wait_first(failing(False), consumer.suspend_flow.wait())
    blocked = asyncio.create_task(consumer.wait_first(failing(True), consumer.suspend_flow.wait()))
    await asyncio.sleep(0.01)
    gate.set()
    with pytest.raises(ValueError, match="cannot decode"):
        await asyncio.wait_for(blocked, 1)


@run
async def test_a_cancelled_reader_cancels_its_blocked_hand_over() -> None:
    consumer, queue = Consumer(), asyncio.Queue[int](maxsize=1)
    await consumer.hand_over(queue, 1)
    handing = asyncio.create_task(consumer.hand_over(queue, 2))
    await asyncio.sleep(0.05)
    handing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await handing
    queue.get_nowait()
    await asyncio.sleep(0.01)
    assert queue.empty()
