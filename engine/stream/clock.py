"""The engine's clock is stream time: the latest `occurred_at` seen, kept per partition.

Time-driven outcomes (inactivity, window roll-off, demotion, at-risk) run at UTC day boundaries of that
clock, for each partition after its own earlier events and before its later ones, so a backfill of last
year's events gives what the offline replay gives. When a partition is idle, its clock follows the
latest time seen on any partition, and then (if allowed) the wall clock, so a quiet shop still notices
who stopped buying.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from engine.loyalty.evolve import day_start


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

    def idle_tick(self, partition: int, wall_now: datetime) -> datetime | None:
        """For an idle partition: follow the latest time seen anywhere, then the wall clock if allowed."""
        target = self._latest
        if self.wall_clock_when_idle and (target is None or wall_now > target):
            target = wall_now
        if target is None:
            return None
        return self._advance(partition, target)

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
