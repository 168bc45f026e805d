"""Fold an order history for `escalera bootstrap` (issue 17): the replay's core over the files in order, with the
checks a seed needs and the cutover's split of the decisions. No Kafka here: `engine.broker.seed` writes the result.

Unlike `escalera replay`, the fold does not `finish`: a worker that had streamed the history would not have swept
every customer to one final moment either; it stops after the last event, its midnights passed up to that event's
day, and the workers go on from there exactly as after a restart (each partition's clock is its customers' latest).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from engine.errors import EscaleraError
from engine.loyalty import Policy, Population, Published
from engine.offline.lines import read_lines
from engine.offline.replay import DAY, DEFAULT_PARTITIONS, Replay
from schemas.decoder import DecodeLimits
from schemas.events import EventRejected


class HistoryOutOfOrder(EscaleraError):
    """An event of the history is older than an earlier line's by more than the arrival grace."""


@dataclass
class Cutover:
    """Where each decision goes: before `publish_from`, only to the audit files; at or after it, to the topics too
    (None: nothing is published)."""

    publish_from: datetime | None
    historic: Callable[[Published], None]
    live: Callable[[Published], None]
    published: int = 0
    held: int = 0

    def decide(self, decision: Published) -> None:
        """Send one decision where its time puts it."""
        if self.publish_from is not None and decision.occurred_at >= self.publish_from:
            self.published += 1
            self.live(decision)
        else:
            self.held += 1
            self.historic(decision)


@dataclass
class Folded:
    """The history folded: the replay (its states, counts, clock) and the population of every midnight it passed,
    quiet ones included (the same as the last one classified before them)."""

    replay: Replay
    populations: dict[datetime, Population] = field(default_factory=dict)

    def midnight_populations(self) -> Iterator[tuple[datetime, Population]]:
        """Every midnight from the first classified to the last passed, with its population: a worker restoring the
        states passes again the midnights after its least advanced partition's time, and finds each one's population
        instead of waiting for partitions that are past it."""
        if not self.populations or self.replay.clock is None:
            return
        days = sorted(self.populations)
        day, last = days[0], max(days[-1], _midnight(self.replay.clock))
        population = self.populations[day]
        while day <= last:
            population = self.populations.get(day, population)
            yield day, population
            day += DAY


def _midnight(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def fold(
    files: list[Path],
    policy: Policy,
    limits: DecodeLimits,
    now: datetime,
    grace: timedelta,
    cutover: Cutover,
    on_rejected: Callable[[EventRejected], None],
    on_bytes: Callable[[int], None] | None = None,
    partitions: int = DEFAULT_PARTITIONS,
) -> Folded:
    """Fold `files` in order with the replay's core. An event older than the latest before it by more than `grace`
    stops the fold (HistoryOutOfOrder, naming the file and line): the workers apply such an event as late, the
    replay in file order, and a seed must be what both would have. A repeated event (an export's redelivery, the
    same event id) is not out of order: it changes nothing anywhere."""
    replay = Replay(policy, limits, now, cutover.decide, on_rejected, partitions)
    folded = Folded(replay)
    replay.on_midnight = folded.populations.__setitem__
    for path in files:
        for number, line in enumerate(read_lines(path), start=1):
            latest, duplicates = replay.clock, replay.counts.duplicates
            replay.feed(line)
            event = replay.last_event
            repeated = replay.counts.duplicates > duplicates  # a redelivery changes nothing, wherever it is
            if event is not None and latest is not None and latest - event.occurred_at > grace and not repeated:
                raise HistoryOutOfOrder(
                    f"{path} line {number}: the event {event.event_id!r} happened at {event.occurred_at.isoformat()}, "
                    f"{(latest - event.occurred_at).total_seconds():,.0f} s before an earlier line's "
                    f"{latest.isoformat()} (more than ESCALERA_ARRIVAL_GRACE_SECONDS={grace.total_seconds():g}): "
                    "sort the history by occurred_at (and give the files in time order)"
                )
            if on_bytes is not None:
                on_bytes(len(line) + 1)
    return folded
