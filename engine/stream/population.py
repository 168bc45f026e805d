"""Figures across every partition: each partition posts its customers' window spends and its latest event time.

The volume classification compares a customer with all customers, and an idle worker's clock follows the
latest time seen anywhere; both need every partition, whichever worker owns it. Each partition's summary
is small enough for one Kafka record (the spends compress well), and combining them gives exactly the
population the offline replay computes.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import orjson

from engine.loyalty import CustomerState, Outcome, Policy, Population, sweep_in_place
from engine.loyalty.figures import figures
from engine.stream.clock import StreamClock
from engine.stream.partitions import OwnedPartition

log = logging.getLogger("escalera.worker")

POPULATION_REFRESH = 5.0  # seconds between a partition's population passes (summary posted, volume classified)


@dataclass(frozen=True, slots=True)
class PartitionSummary:
    """One partition's positive window spends (base currency) and its latest event time."""

    latest: datetime | None
    spends: tuple[Decimal, ...]

    def to_bytes(self) -> bytes:
        """Compressed JSON, for a compacted topic keyed by partition."""
        body = {
            "latest": None if self.latest is None else self.latest.isoformat(),
            "spends": list(map(str, self.spends)),
        }
        return zlib.compress(orjson.dumps(body))

    @classmethod
    def from_bytes(cls, raw: bytes) -> PartitionSummary:
        """What `to_bytes` wrote."""
        body = orjson.loads(zlib.decompress(raw))
        latest = None if body["latest"] is None else datetime.fromisoformat(body["latest"])
        return cls(latest, tuple(Decimal(spend) for spend in body["spends"]))


class PopulationBoard:
    """The latest summary of every partition, and what they say together."""

    def __init__(self, partitions: int, high_volume_share: Decimal) -> None:
        self.partitions, self.high_volume_share = partitions, high_volume_share
        self._summaries: dict[int, PartitionSummary] = {}

    def post(self, partition: int, summary: PartitionSummary) -> None:
        """Record a partition's latest summary."""
        self._summaries[partition] = summary

    @property
    def complete(self) -> bool:
        """Every partition has posted."""
        return len(self._summaries) == self.partitions

    def population(self) -> Population | None:
        """The population over every partition (None until every partition has posted)."""
        if not self.complete:
            return None
        spends = (spend for summary in self._summaries.values() for spend in summary.spends)
        return Population.compute(spends, self.high_volume_share)

    def latest(self) -> datetime | None:
        """The latest event time posted by any partition."""
        times = [s.latest for s in self._summaries.values() if s.latest is not None]
        return max(times) if times else None


class PopulationPass:
    """A partition's periodic pass: post its spends when they changed, and classify the volume of the customers who
    changed or whom a new population may move (not every member: a partition may hold a million)."""

    def __init__(self, board: PopulationBoard, clock: StreamClock, policy: Policy, every: float = POPULATION_REFRESH):
        self.board, self.clock, self.policy, self.every = board, clock, policy, every

    def due(self, owned: OwnedPartition) -> bool:
        """Whether the partition's pass is due (passes run on a schedule); if so, it counts as run now."""
        if time.monotonic() - owned.refreshed < self.every:
            return False
        owned.refreshed = time.monotonic()
        return True

    def run(
        self, partition: int, owned: OwnedPartition, peek: Callable[[str], CustomerState | None]
    ) -> Iterator[PartitionSummary | tuple[str, Outcome, datetime | None]]:
        """The partition's summary to post (if its spends or latest event time moved), then each customer's outcome
        to record, with their due moment before (`peek`: a state without keeping it in memory; the pass changes the
        states it classifies in place)."""
        began = time.perf_counter()
        spends = len(owned.touched)
        for customer_id in owned.touched:
            state = peek(customer_id)
            owned.set_spend(
                customer_id, None if state is None else figures(state, state.clock, self.policy).window_spend
            )
        if owned.changed or spends:  # spends, or at least the partition's latest event time, moved
            summary = PartitionSummary(self.clock.now(partition), tuple(s for s, _ in owned.by_spend if s > 0))
            yield summary
            self.board.post(partition, summary)
            owned.changed = False
        population = self.board.population()
        moment = self.clock.now(partition)
        if population is None or moment is None:
            return
        candidates = owned.touched | owned.movable(population) if population != owned.population else owned.touched
        for customer_id in sorted(candidates):
            state = peek(customer_id)
            if state is None:
                continue
            clock, due = state.clock, state.due
            outcome = sweep_in_place(state, moment, self.policy, population)
            if outcome.emitted or state.clock != clock or state.due != due:  # else nothing to write
                yield customer_id, outcome, due
        owned.population = population
        owned.touched = set()  # including those just classified: their spend did not change
        seconds = time.perf_counter() - began
        log.log(logging.INFO if seconds > 1 else logging.DEBUG,
                "population pass on partition %d: %d spends computed, %d customers classified in %.2f s",
                partition, spends, len(candidates), seconds)  # fmt: skip
