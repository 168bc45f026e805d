"""Acknowledge each topic partition's records in the order they were read, whatever order they finish in.

Faust commits past a one-record gap at the head of a partition's acknowledged offsets, and past any gap before
its first commit (`Consumer._new_offset`; faust-streaming #606 and #312 are about its gap handling): a record
acknowledged while an earlier one of its partition still waits (a dead letter read while an earlier event waits
in the event-time merge) could have its offset committed past the earlier one, which a crash then loses. So a
finished record is acknowledged only once every earlier record of its partition has finished (found by
tests/reliability/test_crash.py, RELIABILITY.md fault 2; the rule itself in tests/unit/test_ack_order.py).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from faust.types import TP


class AckOrder:
    """The records read and not yet acknowledged, per topic partition, in the order they were read. A record
    delivered twice (Faust seeks back to the committed offset at start-up and after a rebalance, and delivers
    what it had already delivered) is tracked twice, and each copy is acknowledged once it finishes."""

    def __init__(self) -> None:
        self.read_order: dict[TP, deque[int]] = {}
        self.finished: dict[TP, dict[int, list[Any]]] = {}

    def read(self, event: Any) -> None:
        """A record was read: it is acknowledged after the ones read before it on its partition."""
        message = event.message
        self.read_order.setdefault(message.tp, deque()).append(message.offset)

    def finish(self, event: Any) -> None:
        """A record's effects are queued: it may be acknowledged once the earlier ones are."""
        message = event.message
        self.finished.setdefault(message.tp, {}).setdefault(message.offset, []).append(event)

    def ready(self) -> Iterator[Any]:
        """The records to acknowledge now: on each partition, the finished ones up to the first unfinished."""
        for tp, finished in self.finished.items():
            order = self.read_order.get(tp)
            while order and finished.get(order[0]):
                copies = finished[order[0]]
                yield copies.pop(0)
                if not copies:
                    del finished[order[0]]
                order.popleft()

    def forget(self, kept: Iterable[int]) -> None:
        """After a rebalance: partitions given away are read again by their new owner, never acknowledged here."""
        owned = set(kept)
        tables: tuple[dict[TP, Any], ...] = (self.read_order, self.finished)
        for table in tables:
            for tp in [tp for tp in table if tp.partition not in owned]:
                del table[tp]

    def waiting(self) -> int:
        """Records read and not yet acknowledged."""
        return sum(len(order) for order in self.read_order.values())
