"""The engine's clock is stream time: the latest `occurred_at` seen, kept per partition.

Time-driven outcomes (inactivity, window roll-off, demotion, at-risk) run at UTC day boundaries of that
clock, for each partition after its own earlier events and before its later ones, so a backfill of last
year's events gives what the offline replay gives. When a partition is idle, its clock follows the
latest time seen on any partition, and then (if allowed) the wall clock — but only when the events are live or
the input has gone quiet, never during a backfill — so a quiet shop still notices who stopped buying, and a
history published at any rate is never overtaken by today.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from engine.loyalty.evolve import day_start

# The wall clock is followed only when it cannot sweep ahead of data still arriving (issue 15): a backfill of last
# year published at 100 events/s used to find a partition momentarily drained, jump it to today and sweep every
# customer there, before the rest of their history arrived (tests/integration/test_real_arrival.py: 73 of 150
# customers wrong, win-back offers the replay never grants).
LIVE_WITHIN = timedelta(seconds=60)  # the latest event this close to the wall clock: the shop is live
QUIET_AFTER = 30.0  # seconds without an inbound record: whatever was being published has arrived


@dataclass
class StreamClock:
    """Stream time per partition, and the sweeps it calls for."""

    wall_clock_when_idle: bool = True
    _partitions: dict[int, datetime] = field(default_factory=dict)
    _latest: datetime | None = None

    def now(self, partition: int) -> datetime | None:
        """The partition's stream time (None before its first event)."""
        return self._partitions.get(partition)

    @property
    def latest(self) -> datetime | None:
        """The latest event time seen on any partition."""
        return self._latest

    def observe(self, partition: int, occurred_at: datetime) -> datetime | None:
        """Advance the partition to an event's time; return the day boundary to sweep at first, if crossed.

        A late event (older than the partition's time) never moves the clock back.
        """
        if self._latest is None or occurred_at > self._latest:
            self._latest = occurred_at
        return self._advance(partition, occurred_at)

    def heard(self, moment: datetime) -> None:
        """Another worker saw events up to `moment`: idle partitions may follow it."""
        if self._latest is None or moment > self._latest:
            self._latest = moment

    def idle_tick(self, partition: int, wall_now: datetime, quiet_seconds: float) -> datetime | None:
        """For an idle partition: follow the latest event time seen anywhere, and the wall clock (if allowed) only
        when that cannot run ahead of events still arriving: the events are live (the latest is within
        `LIVE_WITHIN` of the wall clock), or nothing has arrived for `QUIET_AFTER` seconds (`quiet_seconds`: since
        this worker last read an inbound record), so a backfill is over or the shop is quiet. Before any event,
        nothing moves: a history may be about to arrive."""
        target = self._latest
        if target is None:
            return None
        live = wall_now - target <= LIVE_WITHIN
        if self.wall_clock_when_idle and wall_now > target and (live or quiet_seconds >= QUIET_AFTER):
            target = wall_now
        return self._advance(partition, target)

    def reach(self, partition: int, moment: datetime) -> None:
        """The worker passed a midnight for all its partitions: the partition's time is at least `moment`."""
        previous = self._partitions.get(partition)
        if previous is None or moment > previous:
            self._partitions[partition] = moment

    def restore(self, partition: int, moment: datetime) -> None:
        """Set a partition's time from a saved state (after a restart or a rebalance): the latest of those restored."""
        previous = self._partitions.get(partition)
        if previous is not None and previous >= moment:
            return
        self._partitions[partition] = moment
        if self._latest is None or moment > self._latest:
            self._latest = moment

    def forget(self, partition: int) -> None:
        """Drop a partition this worker no longer owns."""
        self._partitions.pop(partition, None)

    def _advance(self, partition: int, moment: datetime) -> datetime | None:
        previous = self._partitions.get(partition)
        if previous is not None and moment <= previous:
            return None
        self._partitions[partition] = moment
        if previous is None:
            return None  # the first event of a partition has nothing earlier to sweep
        boundary = day_start(moment)
        return boundary if boundary > previous else None
