"""Event-time order across inputs, as the offline replay sees a time-sorted file.

Purchases, feedback and customer events arrive on three topics and several partitions; Kafka orders each
topic partition, not all of them together. Each input (a topic partition, or the worker's own queue of
referral credits) is a FIFO queue whose order is kept, late events included; the next item is the head with
the earliest event time, taken only when every input has a head or has nothing more to read right now.
This is how Kafka Streams synchronizes the inputs of a task (KIP-353, `max.task.idle.ms`). Ties go to the
input listed first. With a grace, an item goes past an input that is empty and read to its end only once it has
waited the grace since it arrived: an event published a little later on another topic (up to the grace) may still
come before it in event time (issue 15: events a second apart on two topics were applied in the wrong order).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator
from datetime import datetime
from typing import Generic, TypeVar

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


class EventTimeMerge(Generic[K, T]):
    """One queue per input; `release` gives items in event-time order."""

    def __init__(self, inputs: Iterable[K] = ()) -> None:
        self._queues: dict[K, deque[tuple[datetime, float, T]]] = {}
        self.set_inputs(inputs)

    def set_inputs(self, inputs: Iterable[K]) -> None:
        """Follow a new set of inputs (their order is the tie-break order); what dropped inputs held goes with them."""
        wanted = list(dict.fromkeys(inputs))
        self._queues = {key: self._queues.get(key) or deque() for key in wanted}

    def push(self, key: K, occurred_at: datetime, item: T, arrived: float = 0.0) -> None:
        """Queue an item read from input `key` that arrived (was published) at time `arrived`, in seconds (an input
        not followed yet is added last)."""
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = deque()
        queue.append((occurred_at, arrived, item))

    def release(
        self,
        drained: Callable[[K], bool],
        until: datetime | None = None,
        grace: float = 0.0,
        now: float = 0.0,
        graced: Callable[[K], bool] = lambda _: True,
    ) -> Iterator[T]:
        """Items that can go now, earliest first; `drained(key)` says an input has nothing more to read.

        With `until`, nothing later than it goes (another worker may still send an earlier item, or a midnight
        is still to be passed). With a `grace` (seconds), the earliest item goes past an empty, drained input for
        which `graced(key)` holds only once `now - arrived >= grace` (`now` and `arrived` in seconds on the same
        clock).
        """
        while (queue := self._next(drained, grace, now, graced)) is not None:
            if until is not None and queue[0][0] > until:
                return
            yield queue.popleft()[2]

    def ready(
        self,
        drained: Callable[[K], bool],
        grace: float = 0.0,
        now: float = 0.0,
        graced: Callable[[K], bool] = lambda _: True,
    ) -> datetime | None:
        """The event time of the item `release` would give next with no `until` (None: it would give none)."""
        queue = self._next(drained, grace, now, graced)
        return None if queue is None else queue[0][0]

    def grace_ends(
        self, drained: Callable[[K], bool], grace: float = 0.0, graced: Callable[[K], bool] = lambda _: True
    ) -> float | None:
        """When the grace of the item `release` would give next ends (on the clock of `release`'s `now`), if the grace
        applies to it: it must go past an empty input read to its end. None when nothing is queued, an input not read
        to its end may still hold an earlier item, or no input is empty."""
        queue, waits_for_late = self._head(drained, grace, graced)
        return queue[0][1] + grace if queue is not None and waits_for_late else None

    def _next(
        self, drained: Callable[[K], bool], grace: float, now: float, graced: Callable[[K], bool]
    ) -> deque[tuple[datetime, float, T]] | None:
        """The queue whose head goes next, if one may go now."""
        queue, waits_for_late = self._head(drained, grace, graced)
        if queue is None:
            return None
        if waits_for_late and now - queue[0][1] < grace:
            return None  # an empty input may still get an earlier event, published up to the grace later
        return queue

    def _head(
        self, drained: Callable[[K], bool], grace: float, graced: Callable[[K], bool]
    ) -> tuple[deque[tuple[datetime, float, T]] | None, bool]:
        """The queue with the earliest head (None: nothing queued, or an input not read to its end may still hold an
        earlier event), and whether the head waits for the grace: an empty input read to its end may still get an
        earlier event, published up to the grace later."""
        best: tuple[datetime, int] | None = None
        best_queue: deque[tuple[datetime, float, T]] | None = None
        waits_for_late = False
        for rank, (key, queue) in enumerate(self._queues.items()):
            if queue:
                head = (queue[0][0], rank)
                if best is None or head < best:
                    best, best_queue = head, queue
            elif not drained(key):
                return None, False  # this input may still hold an earlier event
            elif grace > 0 and graced(key):
                waits_for_late = True
        return best_queue, waits_for_late

    def holding_back(self, drained: Callable[[K], bool]) -> list[K]:
        """The inputs that keep the queued items waiting: nothing queued, and not read to their end."""
        return [key for key, queue in self._queues.items() if not queue and not drained(key)]

    def inputs(self) -> list[K]:
        """The inputs followed, in tie-break order."""
        return list(self._queues)

    def items(self) -> Iterator[tuple[datetime, T]]:
        """Every queued item with its event time."""
        for queue in self._queues.values():
            for occurred_at, _, item in queue:
                yield occurred_at, item

    def pending(self) -> int:
        """How many items wait."""
        return sum(len(queue) for queue in self._queues.values())
