"""Figures across every partition: each partition posts its customers' window spends and its latest event time.

The volume classification compares a customer with all customers, and an idle worker's clock follows the
latest time seen anywhere; both need every partition, whichever worker owns it. Each partition's summary
is small enough for one Kafka record (the spends compress well), and combining them gives exactly the
population the offline replay computes.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import orjson

from engine.loyalty import Population


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

    def post(self, partition: int, summary: PartitionSummary) -> bool:
        """Record a partition's summary; True when it changes the board."""
        if self._summaries.get(partition) == summary:
            return False
        self._summaries[partition] = summary
        return True

    def summaries(self) -> Iterable[tuple[int, PartitionSummary]]:
        """The summaries posted so far, by partition."""
        return sorted(self._summaries.items())

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
