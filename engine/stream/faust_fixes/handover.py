"""Faust hands each fetched record to the agents' queues without four tasks and an `asyncio.wait` per record, while
a rebalance still interrupts a hand-over that is blocked.

Faust's reader (`Consumer._drain_messages`, faust/transport/consumer.py) hands every record over as
`await self.wait_first(callback(message), self.suspend_flow.wait())`: mode's `Service.wait_first` wraps the
hand-over, the suspension, the consumer's `stopped` and `crashed` events in a task each and waits for the first with
`asyncio.wait`, then cancels the rest. That is how a rebalance (`Consumer.stop_flow` sets `suspend_flow`) or a stop
interrupts a hand-over blocked on a full agent queue or on the producer's back-pressure. But nearly every hand-over
is not blocked: the conductor's `on_message` (faust/transport/conductor.py) takes an unlocked lock, finds the
channels and puts the event into a queue with room, without ever suspending. For those, the four tasks and the wait
were most of Faust's per-record cost: bypassing them lifted the Faust floor of bench/stream.py 1.4–1.7 × (issue 18,
2,069–2,770 → 3,495–3,945 events/s).

So the hand-over is first run directly, up to its first suspension. When it finishes without one (the common case),
nothing else is made: its suspension coroutine is closed unstarted. When it suspends, the rest of it is given to
mode's `wait_first` together with the suspension, exactly as Faust does it, so a rebalance or a stop interrupts it
as before. A flow already suspended, a stopped or crashed consumer, or a call of another shape goes to mode's
`wait_first` untouched. Tested by tests/unit/test_handover.py (a blocked hand-over interrupted by a suspension, by a
stop; finished when the queue drains; errors raised) and, on the real broker, by every rebalance of the
reliability tier.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any

from mode.services import WaitResults


class _Rest:
    """Awaitable: the rest of a coroutine already run up to its first suspension (`yielded`: what it yielded then,
    the future it waits for, or None for a bare yield). A task awaiting it drives the coroutine on from there."""

    def __init__(self, coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
        self.coro, self.yielded = coro, yielded

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, value = self.coro, self.yielded
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # cancellation, thrown in by the task: into the hand-over
                try:
                    value = coro.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as done:
                    return done.value


def direct_handover(consumer: Any) -> None:
    """Give `consumer` (a Faust consumer, before it starts) a `wait_first` that runs a hand-over directly when it
    does not suspend. `Consumer._drain_messages` is its only caller in Faust."""
    faust_wait_first: Callable[..., Awaitable[WaitResults]] = consumer.wait_first
    suspended = consumer.suspend_flow
    stopped, crashed = consumer._stopped, consumer._crashed

    async def wait_first(*coros: Any, timeout: Any = None) -> WaitResults:
        if (
            len(coros) != 2
            or timeout is not None
            or not all(asyncio.iscoroutine(coro) for coro in coros)
            or suspended.is_set()
            or stopped.is_set()
            or crashed.is_set()
        ):
            return await faust_wait_first(*coros, timeout=timeout)
        handover, interrupt = coros
        try:
            yielded = handover.send(None)
        except StopIteration as done:  # handed over without suspending
            interrupt.close()
            return WaitResults([handover], [done.value], False)
        except BaseException:
            interrupt.close()
            raise
        return await faust_wait_first(_Rest(handover, yielded), interrupt)

    consumer.wait_first = wait_first


def handover_directly(app: Any) -> None:
    """Install `direct_handover` on the app's consumer when Faust makes it (call before it is first used)."""
    new_consumer = app._new_consumer

    def consumer() -> Any:
        made = new_consumer()
        direct_handover(made)
        return made

    app._new_consumer = consumer
