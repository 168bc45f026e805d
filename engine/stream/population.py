"""Figures across every partition, for volume on event time (`engine.loyalty.volume`): at each UTC midnight, every
partition posts its customers' window spends as of that midnight, and each worker classifies its own customers
against the population of all of them once every partition has posted.

A worker passes a midnight only when every event before it has been applied (the merge holds later events back,
see `Processor._release`), so the population of a midnight is the one the offline replay computes there, whatever
the machines' speed and however many workers share the partitions (issue 15; a five-second wall-clock pass used to
classify against whichever partitions had posted, and the demo's volume differed from the replay's for more than
half of its customers).

Three kinds of record on the compacted partition-stats topic (`StatsRecord`):
- `<partition>`: the partition's spends as of a midnight (posted when they changed);
- `<partition>:reached`: the partition passed a midnight with its spends unchanged (posted when other workers
  share the partitions, so they need not wait for a full copy);
- `population:<midnight>`: a population computed, so a worker that restarts after the others passed a midnight
  still knows it (their spends as of it may since have been replaced on the compacted topic).
The stats topic has as many partitions as the inbound topics; records of one key stay in order, and a midnight's
summaries all come before any later midnight's full summary of the same partition.
"""

from __future__ import annotations

import bisect
import zlib
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import orjson

from engine.loyalty import Population

_REACHED = b":reached"
_POPULATION = b"population:"


@dataclass(frozen=True, slots=True)
class PartitionSummary:
    """One partition as of a midnight: its positive window spends (None: unchanged since its previous summary), its
    latest event time (idle partitions elsewhere follow it), and the midnight before which it held nobody, when its
    worker knows (workers start passing midnights at their own first event: one whose partitions start later must
    not keep another waiting for midnights they were empty at)."""

    day: datetime
    latest: datetime | None
    spends: tuple[Decimal, ...] | None
    empty_before: datetime | None = None

    def key(self, partition: int) -> bytes:
        """Its key on the compacted topic: a partition's last full copy and its last midnight are kept apart."""
        return str(partition).encode() + (b"" if self.spends is not None else _REACHED)

    def to_bytes(self) -> bytes:
        """Compressed JSON."""
        body = {
            "day": self.day.isoformat(),
            "latest": None if self.latest is None else self.latest.isoformat(),
            "spends": None if self.spends is None else list(map(str, self.spends)),
            "empty_before": None if self.empty_before is None else self.empty_before.isoformat(),
        }
        return zlib.compress(orjson.dumps(body))

    @classmethod
    def from_bytes(cls, raw: bytes) -> PartitionSummary:
        """What `to_bytes` wrote."""
        body = orjson.loads(zlib.decompress(raw))
        latest = None if body["latest"] is None else datetime.fromisoformat(body["latest"])
        spends = None if body["spends"] is None else tuple(Decimal(spend) for spend in body["spends"])
        empty = body.get("empty_before")
        return cls(
            datetime.fromisoformat(body["day"]),
            latest,
            spends,
            None if empty is None else datetime.fromisoformat(empty),
        )


def population_record(day: datetime, population: Population) -> tuple[bytes, bytes]:
    """The key and value that keep a midnight's population on the compacted topic."""
    value = {
        "threshold": str(population.high_volume_threshold),
        "mean": str(population.mean_spend),
        "customers": population.customers,
    }
    return _POPULATION + day.isoformat().encode(), orjson.dumps(value)


class PopulationBoard:
    """Every partition's summaries, and the population as of each midnight once every partition has passed it."""

    def __init__(self, partitions: int, high_volume_share: Decimal) -> None:
        self.partitions, self.high_volume_share = partitions, high_volume_share
        self._full: dict[int, list[PartitionSummary]] = {}  # full summaries per partition, by midnight
        self._reached: dict[int, datetime] = {}  # the last midnight each partition passed
        self._latest: dict[int, datetime] = {}
        self._empty_before: dict[int, datetime] = {}
        self._known: dict[datetime, Population] = {}
        self._computed: dict[tuple[tuple[int, datetime], ...], Population] = {}  # by the full copies used

    def read(self, key: bytes, value: bytes) -> None:
        """A record of the partition-stats topic, whichever worker wrote it."""
        try:
            if key.startswith(_POPULATION):
                body = orjson.loads(value)
                population = Population(Decimal(body["threshold"]), Decimal(body["mean"]), int(body["customers"]))
                self._known.setdefault(datetime.fromisoformat(key[len(_POPULATION) :].decode()), population)
            else:
                self.post(int(key.removesuffix(_REACHED)), PartitionSummary.from_bytes(value))
        except (KeyError, TypeError, ValueError, zlib.error):
            pass  # a summary in an earlier version's form (its partition posts anew as it passes a midnight)

    def post(self, partition: int, summary: PartitionSummary) -> None:
        """Record a partition's summary (one read again, or older than what is known, changes nothing)."""
        if summary.spends is not None:
            fulls = self._full.setdefault(partition, [])
            days = [full.day for full in fulls]
            at = bisect.bisect_left(days, summary.day)
            if at < len(fulls) and fulls[at].day == summary.day:
                fulls[at] = summary
            else:
                fulls.insert(at, summary)
        if summary.empty_before is not None:
            self._empty_before[partition] = summary.empty_before
        if partition not in self._reached or summary.day > self._reached[partition]:
            self._reached[partition] = summary.day
        if summary.latest is not None and (partition not in self._latest or summary.latest > self._latest[partition]):
            self._latest[partition] = summary.latest

    def population_at(self, day: datetime) -> Population | None:
        """The population as of midnight `day`: None until every partition has passed it."""
        known = self._known.get(day)
        if known is not None:
            return known
        used: list[tuple[int, PartitionSummary]] = []
        for partition in range(self.partitions):
            empty_before = self._empty_before.get(partition)
            if empty_before is not None and day < empty_before:
                continue  # it held nobody then
            reached = self._reached.get(partition)
            fulls = self._full.get(partition, [])
            at = bisect.bisect_right([full.day for full in fulls], day)
            if reached is None or reached < day or at == 0:
                return None
            used.append((partition, fulls[at - 1]))
        key = tuple((partition, summary.day) for partition, summary in used)
        population = self._computed.get(key)
        if population is None:
            spends = (spend for _, summary in used for spend in summary.spends or ())
            population = self._computed[key] = Population.compute(spends, self.high_volume_share)
        self._known[day] = population
        return population

    def forget_before(self, day: datetime) -> None:
        """Drop the full copies no population from `day` on needs (the last one before it stays)."""
        for fulls in self._full.values():
            at = bisect.bisect_right([full.day for full in fulls], day)
            if at > 1:
                del fulls[: at - 1]
        for key in list(self._computed)[:-4]:  # a cache of the last few: quiet midnights reuse the same copies
            del self._computed[key]

    def latest(self) -> datetime | None:
        """The latest event time posted by any partition."""
        return max(self._latest.values(), default=None)
