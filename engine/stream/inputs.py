"""The inputs a worker reads, merged by event time: where reading stands on each, and whether it is drained.

An input is an owned inbound topic partition, or the worker's own queue of referral credits for an owned
partition (`LOCAL_CREDITS`, never read from Kafka). The merge (`engine.stream.merge`) lets a queued event go only
when every input has one queued or has nothing more to read right now: its idleness rule is `drained`, kept here
beside the read offsets it is computed from, and the consumer lag reported on /metrics is the same arithmetic.

The worker reads committed records only (`faust_fixes.isolation`): a partition's end is its last stable offset, and
the offsets the consumer reads past without handing a record over (transaction markers, aborted records) are
nothing to wait for.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Generic, Protocol, TypeVar, runtime_checkable

from faust.types import TP

from engine.stream.merge import EventTimeMerge

LOCAL_CREDITS = ""  # the input of credits this worker queues for its own partitions (no topic)
Input = tuple[str, int]  # (topic, partition); (LOCAL_CREDITS, partition) for the local credits
MADE_HERE = -math.inf  # the publish time of an item made by this worker: the arrival grace never holds it (`queue`)
T = TypeVar("T")


class Highwaters(Protocol):
    """What the inputs need of Faust's consumer: the end of what can be read of a topic partition now (under
    read_committed, its last stable offset)."""

    def highwater(self, tp: TP) -> int | None: ...


@runtime_checkable
class Skips(Protocol):
    """What `faust_fixes.isolation` adds to Faust's consumer: (start, stop), it has handed over no record of a topic
    partition from `start` on and has read it up to `stop` (None: not known). Without it, markers count as records."""

    def skipped(self, tp: TP) -> tuple[int, int] | None: ...


class Inputs(Generic[T]):
    """The event-time merge over the owned inputs, the last offset read on each inbound one, and the event time
    of the last record read on each (what comes next is later, late events aside)."""

    def __init__(self, consumer: Highwaters, inbound_topics: Iterable[str], grace: float = 0.0) -> None:
        self.consumer, self.grace = consumer, grace  # grace: see `release`
        self.skips = consumer if isinstance(consumer, Skips) else None
        self.inbound = tuple(inbound_topics)
        self.merge: EventTimeMerge[Input, T] = EventTimeMerge()
        self.offsets: dict[TP, int] = {}  # last offset read per inbound topic partition
        self.resumed: set[TP] = set()  # those whose offset is where reading resumes, no record read since
        self.last_read: dict[Input, datetime] = {}
        self.arrived = time.monotonic()  # when an inbound record was last read (or reading began)
        self.released_at = 0.0  # the `time.time()` at which `release` last looked at what may go

    def follow(self, owned: Iterable[int]) -> None:
        """After a rebalance: merge the inputs of the owned partitions (local credits first, then the inbound topics
        in their configured order: the tie-break order), forget where reading stood on the others. Records queued
        for partitions given away are unacknowledged: their new owner reads them again."""
        partitions = sorted(owned)
        self.merge.set_inputs(
            [(LOCAL_CREDITS, p) for p in partitions] + [(t, p) for p in partitions for t in self.inbound]
        )
        for tp in [tp for tp in self.offsets if tp.partition not in partitions]:
            del self.offsets[tp]
            self.resumed.discard(tp)

    def resume(self, tp: TP, committed: int | None) -> None:
        """Reading `tp` resumes at the group's committed offset (or the earliest offset kept, when the group has
        none): a record before it counts as read, so an input committed up to its end is known to hold nothing
        more. Called again with the broker's answer once it comes (`Continuity.settle_starts`), which replaces
        Faust's record as long as no record was read: missing, an input committed to its end looked as if it held
        every record from offset 0 on, and the merge waited for it forever (`held_by`; issue 18)."""
        if tp.topic in self.inbound and (tp not in self.offsets or tp in self.resumed) and committed:
            self.offsets[tp] = committed - 1
            self.resumed.add(tp)

    def read(self, tp: TP, offset: int) -> None:
        """A record of an inbound topic partition was read."""
        self.offsets[tp] = offset
        self.resumed.discard(tp)
        self.arrived = time.monotonic()

    def quiet_seconds(self) -> float:
        """How long no inbound record has arrived (the stream clock's rule for following the wall clock)."""
        return time.monotonic() - self.arrived

    def queue(self, source: Input, occurred_at: datetime, item: T, published: float | None = None) -> None:
        """Queue an item read from `source` (or, for local credits, made here) at its event time; `published`: its
        Kafka record's timestamp (seconds), from which the arrival grace is counted.

        None: a referral credit made by this worker, while applying a purchase the merge had let go. It waits for no
        grace of its own: the purchase waited it (or every input had a later event queued), so whatever the replay
        puts before the credit is in the merge already or comes late whatever the wait. Counted from when it was
        made, the grace held every later event behind the credit for another whole grace, and each credit made
        then for yet another one (issue 18: events published in the last seconds of a run waited 3 s)."""
        self.merge.push(source, occurred_at, item, MADE_HERE if published is None else published)
        if source[0] != LOCAL_CREDITS:
            self.last_read[source] = occurred_at

    def release(self, until: datetime | None) -> Iterator[T]:
        """The queued items that can go now, earliest first, none later than `until`; an item goes past an inbound
        input read to its end only once the arrival grace (`ESCALERA_ARRIVAL_GRACE_SECONDS`) has passed since it
        was published: an event published up to the grace later on another topic is still applied in event-time
        order. Counted from the record's Kafka timestamp, not from when it was read, so a backlog read long after
        it was published waits for nothing (a wait from the read cost a quarter of the backfill throughput in
        bench/stream.py)."""
        self.released_at = time.time()
        return self.merge.release(
            self.drained, until, self.grace, self.released_at, graced=lambda key: key[0] != LOCAL_CREDITS
        )

    def ready(self) -> datetime | None:
        """The event time of the item `release` would give next with no limit (None: it would give none)."""
        return self.merge.ready(self.drained, self.grace, time.time(), graced=lambda key: key[0] != LOCAL_CREDITS)

    def grace_ends(self) -> float | None:
        """When the arrival grace of the item `release` would give next ends (`time.time()` seconds), if it has to wait
        for it; None if it does not (see `EventTimeMerge.grace_ends`)."""
        return self.merge.grace_ends(self.drained, self.grace, graced=lambda key: key[0] != LOCAL_CREDITS)

    def remaining(self, tp: TP) -> int | None:
        """Records of an inbound topic partition not read yet (None: its end is not known yet): the offsets up to its
        end, unless the consumer has read up to the end handing over no record past the last one read (what lies
        there is transaction markers and aborted records, which are never handed over)."""
        end = self.consumer.highwater(tp)
        if end is None:
            return None
        seen = self.offsets.get(tp)
        due = 0 if seen is None else seen + 1
        if due >= end:
            return 0
        skipped = None if self.skips is None else self.skips.skipped(tp)
        if skipped is not None and skipped[0] <= due and skipped[1] >= end:
            return 0
        return end - due

    def drained(self, key: Input) -> bool:
        """Nothing more to read now at an input: every record up to its end (the last stable offset) has been read."""
        if key[0] == LOCAL_CREDITS:
            return True  # filled while applying events, never read
        return self.remaining(TP(*key)) == 0

    def lag(self, partitions: Iterable[int]) -> list[tuple[str, int, int]]:
        """Records not yet read per owned inbound topic partition: (topic, partition, records)."""
        found = []
        for partition in partitions:
            for topic in self.inbound:
                remaining = self.remaining(TP(topic, partition))
                if remaining is not None:
                    found.append((topic, partition, remaining))
        return found

    def holding_back(self) -> list[Input]:
        """The inputs that keep queued items waiting: nothing queued, and not read to their end."""
        return self.merge.holding_back(self.drained)

    def unread(self, partition: int) -> Iterator[tuple[TP, int | None]]:
        """The inbound topic partitions of `partition` that hold the queued items back, with the last offset read."""
        for topic, number in self.holding_back():
            if topic != LOCAL_CREDITS and number == partition:
                tp = TP(topic, number)
                yield tp, self.offsets.get(tp)

    def idle(self, partition: int) -> bool:
        """Nothing queued anywhere and every inbound topic of `partition` read to its end."""
        return self.merge.pending() == 0 and all(self.drained((topic, partition)) for topic in self.inbound)

    def reading(self) -> Iterator[datetime | None]:
        """For each inbound input that still has records to deliver, the event time of the last record read on it
        (None: nothing read yet)."""
        for key in self.merge.inputs():
            if key[0] != LOCAL_CREDITS and not self.drained(key):
                yield self.last_read.get(key)
