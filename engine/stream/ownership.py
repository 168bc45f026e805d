"""Which partitions this worker owns, where reading resumes on each after a rebalance, and the states it receives."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from faust.types import TP

from engine.loyalty.state import StateSummary, summarize
from engine.stream.ports import Consumer


class Ownership:
    """The partitions of the inbound topics assigned to this worker, read from Faust's consumer."""

    def __init__(self, consumer: Consumer, inbound_topics: Iterable[str], internal_topic: str) -> None:
        self.consumer = consumer
        self.inbound = tuple(inbound_topics)
        self.internal = internal_topic

    def owned(self) -> list[int]:
        """The partitions of the inbound topics this worker actively owns (not standbys)."""
        return sorted({tp.partition for tp in self.consumer.assignment() if tp.topic in self.inbound})

    def committed(self, partitions: Iterable[int]) -> Iterator[tuple[TP, int | None]]:
        """Where reading resumes on each input of `partitions`, inbound and internal: the group's committed offset
        (None: not known). Faust's record of committed offsets is read (it exposes no positions); asking the
        consumer for positions while it fetches made records go missing in our two-worker tests."""
        committed = getattr(self.consumer, "_committed_offset", {})
        for partition in partitions:
            for topic in (*self.inbound, self.internal):
                tp = TP(topic, partition)
                yield tp, committed.get(tp)

    @staticmethod
    def restored(stored: Iterable[tuple[int, bytes]]) -> Iterator[tuple[int, StateSummary]]:
        """The summaries of the `stored` (partition, stored state) pairs, with their partition."""
        for partition, raw in stored:
            yield partition, summarize(raw)
