"""Faust's table recovery takes the changelog records already queued without a task and a timer per record, and
still waits, with its five-second timeout, for a queue that is empty.

Faust's recovery loop (`Recovery._slurp_changelogs`, faust/tables/recovery.py) takes every changelog record with
`await asyncio.wait_for(changelog_queue.get(), timeout=5.0)`. Python 3.11's `wait_for` makes a task of the `get`, a
future, a timer and a done callback, and then waits for the event loop to turn, for every record, even when the
queue holds thousands. Taking the queued ones without that halved Faust's reading of the changelog at start-up from
an empty data directory (bench/restore.py at 100,000 states, issue 18: 7.1–8.4 s → 3.4–4.2 s; restore 6,800–8,100 →
9,800–11,800 states/s from the worker's start). No faust-streaming issue found names this cost; #74 is about the
same queue's back-pressure during recovery, left as it is here.

So the changelog queue's `get` (`TableManager.changelog_queue`, faust/tables/manager.py) returns a record already
queued as `Taken`, taken with the queue's own `get_nowait` (as `asyncio.Queue.get` does once it has a record, so the
flow control's pressure-drop callbacks run as before), and the recovery module's `wait_for` hands a `Taken` back
as it is: awaiting it gives the record without suspending. Anything else goes to asyncio's `wait_for` untouched: an
empty queue is waited for exactly as before, so the timeouts by which Faust sees that recovery has ended
(`_maybe_signal_recovery_end`) are unchanged; and the loop's own bookkeeping (offsets, buffers, standbys,
`signal_recovery_end`) is Faust's, record by record, since its loop is not replaced. After `WITHOUT_WAITING`
records taken in a row, the next one goes through Faust's path, one turn of the event loop, so the web server and
the fetcher that fills the queue still run: what other tasks see is Faust's recovery with a coarser grain, as if
they had been scheduled a few milliseconds later.

Replacing `_slurp_changelogs` would do the same with 150 lines of Faust's copied; this keeps them Faust's. The
recovery module's `asyncio` is a view of asyncio whose `wait_for` alone differs, and only for a `Taken`. Tested by
tests/unit/test_recovery_pace.py (order, no task per record, turns of the loop, the timeout and the wait of an
empty queue, the app's table manager) and, on the real broker, by the restores of tests/integration and
tests/reliability/test_crash.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Generator
from typing import Any

from faust.tables import TableManager
from faust.tables import recovery as faust_recovery
from mode.utils.queues import ThrowableQueue

WITHOUT_WAITING = 256  # records taken in a row without a turn of the event loop (≈ 10 ms of restore, measured)


class Taken:
    """A record taken from the queue at once. Faust's recovery gets it back from `wait_for` as it is; awaited, it
    gives the record without suspending."""

    __slots__ = ("record",)

    def __init__(self, record: Any) -> None:
        self.record = record

    def __await__(self) -> Generator[Any, None, Any]:
        return self.record
        yield  # a generator that never suspends


def wait_for(awaitable: Awaitable[Any], timeout: float | None) -> Awaitable[Any]:
    """asyncio's `wait_for`, except for a record already taken: that one is awaited directly."""
    if type(awaitable) is Taken:
        return awaitable
    return asyncio.wait_for(awaitable, timeout)


class RecoveryAsyncio:
    """What the recovery module sees as `asyncio`: asyncio itself, with `wait_for` above."""

    wait_for = staticmethod(wait_for)

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)


def take_queued(queue: ThrowableQueue[Any]) -> None:
    """Make the queue's `get` take a queued record at once, `WITHOUT_WAITING` times in a row at most."""
    get: Callable[[], Awaitable[Any]] = queue.get
    run = 0

    def take() -> Awaitable[Any]:
        nonlocal run
        if run < WITHOUT_WAITING and not queue.empty():
            run += 1
            return Taken(queue.get_nowait())
        run = 0
        return get()  # Faust's own path: waits while the queue is empty, and turns the event loop

    queue.get = take


class PacedTableManager(TableManager):
    """Faust's table manager, its changelog queue made by Faust and then given `take_queued`."""

    @property
    def changelog_queue(self) -> ThrowableQueue[Any]:
        made = self._changelog_queue is None
        queue: ThrowableQueue[Any] = super().changelog_queue
        if made:
            take_queued(queue)
        return queue


def pace_recovery(app: Any) -> None:
    """Make the app's table recovery take queued changelog records at once (call before the app's first table)."""
    if "tables" in vars(app):  # `App.tables`, a cached property, makes it from the setting below
        raise RuntimeError("pace_recovery: the app's table manager is already made")
    app.conf.TableManager = PacedTableManager  # Faust's setting for it (Escalera gives none of its own)
    if not isinstance(faust_recovery.asyncio, RecoveryAsyncio):  # type: ignore[attr-defined]  # once per process
        faust_recovery.asyncio = RecoveryAsyncio()  # type: ignore[attr-defined,assignment]  # every app's recovery
