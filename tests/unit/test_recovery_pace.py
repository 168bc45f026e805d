"""faust_fixes.recovery_pace: Faust's recovery takes queued changelog records in order without a task or a timer
each, still turns the event loop every `WITHOUT_WAITING` records, and waits for an empty queue, with its timeout,
exactly as before."""

from __future__ import annotations

import asyncio
import functools
import itertools
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from faust.tables import recovery as faust_recovery
from mode.utils.queues import FlowControlEvent, ThrowableQueue

from engine.settings import load_settings
from engine.stream.app import create_app
from engine.stream.faust_fixes.recovery_pace import (
    WITHOUT_WAITING,
    PacedTableManager,
    RecoveryAsyncio,
    pace_recovery,
    take_queued,
    wait_for,
)


def run(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """An async test run on its own event loop (the unit tier has no async plugin)."""

    @functools.wraps(test)
    def sync(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return sync


def changelog_queue(maxsize: int = 10_000) -> ThrowableQueue[Any]:
    """A queue as Faust makes the changelog queue (`TableManager.changelog_queue`), given `take_queued`."""
    queue: ThrowableQueue[Any] = ThrowableQueue(
        maxsize=maxsize, flow_control=FlowControlEvent(initially_suspended=False), clear_on_resume=True
    )
    take_queued(queue)
    return queue


async def take(queue: ThrowableQueue[Any], timeout: float = 5.0) -> Any:
    """As Faust's recovery loop takes a record (`Recovery._slurp_changelogs`), through the recovery module's view."""
    return await wait_for(queue.get(), timeout=timeout)


class Counts:
    """Tasks and timers made on the running loop from now on."""

    def __init__(self) -> None:
        self.tasks = self.timers = 0
        loop = asyncio.get_running_loop()
        call_later = loop.call_later

        def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
            self.tasks += 1
            return asyncio.Task(coro, loop=loop, **kwargs)

        def counted_call_later(*args: Any, **kwargs: Any) -> asyncio.TimerHandle:
            self.timers += 1
            return call_later(*args, **kwargs)

        loop.set_task_factory(factory)
        loop.call_later = counted_call_later  # type: ignore[method-assign]


@run
async def test_queued_records_come_in_order_without_a_task_or_a_timer_each() -> None:
    queue = changelog_queue()
    for record in range(2000):
        queue.put_nowait(record)
    counts = Counts()
    taken = [await take(queue) for _ in range(2000)]
    assert taken == list(range(2000))
    turns = 2000 // (WITHOUT_WAITING + 1)  # one record in WITHOUT_WAITING + 1 goes through Faust's own path
    assert counts.tasks == counts.timers == turns


@run
async def test_the_event_loop_turns_at_least_every_WITHOUT_WAITING_records() -> None:
    queue, taken, seen = changelog_queue(), [], []
    for record in range(2000):
        queue.put_nowait(record)

    async def other_task() -> None:  # the web server, the fetcher
        while True:
            seen.append(len(taken))
            await asyncio.sleep(0)

    other = asyncio.create_task(other_task())
    await asyncio.sleep(0)
    while len(taken) < 2000:
        taken.append(await take(queue))
    other.cancel()
    gaps = [later - earlier for earlier, later in itertools.pairwise(seen)]
    assert max(gaps) == WITHOUT_WAITING + 1
    assert seen[-1] >= 2000 - WITHOUT_WAITING


@run
async def test_an_empty_queue_times_out_as_before() -> None:
    queue = changelog_queue()
    queue.put_nowait("last")
    assert await take(queue) == "last"
    began = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        await take(queue, timeout=0.05)
    assert time.monotonic() - began >= 0.04
    queue.put_nowait("next")
    assert await take(queue) == "next"


@run
async def test_an_empty_queue_is_waited_for_until_a_record_comes() -> None:
    queue = changelog_queue()
    asyncio.get_running_loop().call_later(0.05, queue.put_nowait, "late")
    began = time.monotonic()
    assert await take(queue) == "late"
    assert time.monotonic() - began >= 0.04


@run
async def test_an_error_thrown_into_the_queue_is_raised_as_before() -> None:
    queue = changelog_queue()
    queue.put_nowait("record")
    await queue.throw(ValueError("broken"))
    with pytest.raises(ValueError, match="broken"):
        await take(queue)
    assert await take(queue) == "record"


@run
async def test_the_flow_control_hears_the_queue_drain_as_with_fausts_get() -> None:
    async def drops(queue: ThrowableQueue[Any]) -> list[int]:
        dropped: list[int] = []

        def on_pressure_drop() -> None:  # Faust resumes fetching the partition
            dropped.append(queue.qsize())

        for record in range(90):  # past the pressure-high size of a queue of 100
            queue.put_nowait_enhanced(record, on_pressure_high=lambda: None, on_pressure_drop=on_pressure_drop)
        for _ in range(90):
            await wait_for(queue.get(), timeout=5.0)  # the unpaced queue's goes to asyncio's
        return dropped

    paced = changelog_queue(maxsize=100)
    fausts: ThrowableQueue[Any] = ThrowableQueue(maxsize=100, flow_control=FlowControlEvent(initially_suspended=False))
    assert await drops(paced) == await drops(fausts) == [40]


@run
async def test_anything_else_goes_to_asyncio_wait_for() -> None:
    assert await wait_for(asyncio.sleep(0, result="slept"), timeout=1.0) == "slept"
    with pytest.raises(asyncio.TimeoutError):
        await wait_for(asyncio.sleep(1.0), timeout=0.01)


@run
async def test_the_apps_recovery_is_paced(tmp_path: Path) -> None:
    app = create_app(load_settings({"ESCALERA_TABLE_STORE": "memory", "ESCALERA_DATA_DIR": str(tmp_path)})).app
    assert isinstance(app.tables, PacedTableManager)
    assert isinstance(faust_recovery.asyncio, RecoveryAsyncio)
    assert faust_recovery.asyncio.wait_for is wait_for
    assert faust_recovery.asyncio.TimeoutError is asyncio.TimeoutError  # the rest is asyncio's
    queue = app.tables.changelog_queue
    assert queue is app.tables.changelog_queue  # made once, given `take_queued` once
    queue.put_nowait("record")
    assert await faust_recovery.asyncio.wait_for(queue.get(), timeout=5.0) == "record"
    with pytest.raises(RuntimeError, match="already made"):
        pace_recovery(app)
