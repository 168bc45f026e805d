"""Perk budgets: at most N grants a period across every customer, exact across partitions and deterministic.

A budget of N grants a period is split into shares, one per partition of the inbound topics (`share`: N // P, plus
one for each of the first N % P partitions). Each partition counts its own grants against its own share, so the
total never exceeds N although no partition hears of another's grants, and every engine that splits the customers
the same way (`escalera replay`, one worker, several workers sharing the partitions) grants the same perks: a
customer's partition is the one Kafka's default partitioner gives their id (`partition_of`), as every producer of the
inbound topics keys them. The price of exactness: a partition whose share is spent holds perks back while another's
share may be left over (the budget is a ceiling, not a target).

Counting survives at-least-once delivery: a ledger keeps the ids of the perks it counted, per budget and period, and
counts distinct ids (a perk's id derives only from its customer, rule and cause), so an event applied again after a
crash takes the same id again and is counted once, and granted again as it was the first time.

A period's ids are kept until `KEPT_AFTER` after it ends, in the event time of the partition's decisions; a decision
dated in an older period (an event arriving more than a month late) is held back: that period's budget is closed.

The core sees a ledger only through `BudgetLedger` (passed in `Recorder.ledger`); `Ledgers` holds every partition's
`PartitionLedger` in memory (the replay; a worker holds those of its partitions, and saves and restores each as JSON).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal, NamedTuple, Protocol

import orjson

from engine.errors import EscaleraError

KEPT_AFTER = timedelta(days=35)
_M32 = 0xFFFFFFFF
_MURMUR = 0x5BD1E995


class Period(NamedTuple):
    """A budget's calendar period, [start, end) in UTC."""

    start: datetime
    end: datetime


class Take(NamedTuple):
    """What a ledger made of a grant: counted (or counted already), the share spent, or the period closed; and the
    share of the customer's partition."""

    result: Literal["taken", "spent", "closed"]
    share: int


class BudgetLedger(Protocol):
    """Where the core counts grants against budgets (see the module's text)."""

    def take(self, customer_id: str, key: str, period: Period, at: datetime, limit: int, perk_id: str) -> Take:
        """Count the grant `perk_id` (of `customer_id`, decided at `at`) against the budget `key` of `limit` grants in
        `period`, if its partition's share allows it; a perk id counted before is granted again and not counted
        twice."""
        ...


class BudgetError(EscaleraError):
    """A saved ledger does not fit the topics it would count for."""


def share(limit: int, partitions: int, partition: int) -> int:
    """Partition `partition`'s part of a budget of `limit` grants: the parts of all partitions sum to `limit`."""
    return limit // partitions + (partition < limit % partitions)


def partition_of(customer_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a record keyed by `customer_id` (murmur2 as in the Java client;
    the same as `engine.broker.partitioner.partition_of`, which the core may not import)."""
    data = customer_id.encode()
    length = len(data)
    h = 0x9747B28C ^ length
    tail = length & ~3
    for i in range(0, tail, 4):
        k = (int.from_bytes(data[i : i + 4], "little") * _MURMUR) & _M32
        k = ((k ^ (k >> 24)) * _MURMUR) & _M32
        h = ((h * _MURMUR) & _M32) ^ k
    rest = length - tail
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h = ((h ^ data[tail]) * _MURMUR) & _M32
    h ^= h >> 13
    h = (h * _MURMUR) & _M32
    h ^= h >> 15
    return (h & 0x7FFFFFFF) % partitions


class PartitionLedger:
    """The grants one partition counted against the policy's budgets: per (budget key, period start), the period's
    end and the ids counted. `unsaved` is set whenever an id is counted; its owner clears it once it saved
    `to_json()` (a worker: with the partition's states, so that both restore to the same point)."""

    __slots__ = ("_periods", "latest", "partition", "partitions", "unsaved")

    def __init__(self, partition: int, partitions: int) -> None:
        self.partition, self.partitions = partition, partitions
        self.latest: datetime | None = None  # the latest decision time it was asked about
        self.unsaved = False
        self._periods: dict[tuple[str, datetime], tuple[datetime, set[str]]] = {}

    def take(self, customer_id: str, key: str, period: Period, at: datetime, limit: int, perk_id: str) -> Take:
        """`BudgetLedger.take`, for a customer of this partition (`customer_id` is not checked: a worker passes the
        ledger of the partition the record was read from)."""
        part = share(limit, self.partitions, self.partition)
        if self.latest is None or at > self.latest:
            self.latest = at
        if period.end + KEPT_AFTER <= self.latest:
            return Take("closed", part)
        counted = self._periods.get((key, period.start))
        if counted is None:
            self._forget_closed()
            counted = self._periods[key, period.start] = (period.end, set())
        ids = counted[1]
        if perk_id in ids:
            return Take("taken", part)
        if len(ids) >= part:
            return Take("spent", part)
        ids.add(perk_id)
        self.unsaved = True
        return Take("taken", part)

    def counted(self, key: str, start: datetime) -> frozenset[str]:
        """The ids counted against budget `key` in the period starting at `start`."""
        held = self._periods.get((key, start))
        return frozenset() if held is None else frozenset(held[1])

    def to_json(self) -> bytes:
        """The ledger as JSON bytes (open periods only, in a stable order); `from_json` reads it back."""
        latest = self.latest
        periods = [
            {"key": key, "start": start, "end": end, "ids": sorted(ids)}
            for (key, start), (end, ids) in sorted(self._periods.items())
            if latest is None or end + KEPT_AFTER > latest
        ]
        data = {"partition": self.partition, "partitions": self.partitions, "latest": latest, "periods": periods}
        return orjson.dumps(data)

    @classmethod
    def from_json(cls, raw: bytes) -> PartitionLedger:
        """The ledger `to_json` wrote."""
        data = orjson.loads(raw)
        ledger = cls(data["partition"], data["partitions"])
        if data["latest"] is not None:
            ledger.latest = datetime.fromisoformat(data["latest"])
        for held in data["periods"]:
            start, end = datetime.fromisoformat(held["start"]), datetime.fromisoformat(held["end"])
            ledger._periods[held["key"], start] = (end, set(held["ids"]))
        return ledger

    def _forget_closed(self) -> None:
        """Drop the periods no decision can be counted in any more (see KEPT_AFTER)."""
        latest = self.latest
        if latest is not None:
            closed = [held for held, (end, _) in self._periods.items() if end + KEPT_AFTER <= latest]
            for held in closed:
                del self._periods[held]


class Ledgers:
    """Every partition's ledger, each customer's grants counted in their own partition's (`partition_of`): the
    replay's; a worker keeps those of the partitions it owns (`restore` on assignment, `drop` on revocation)."""

    __slots__ = ("by_partition", "partitions")

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.by_partition: dict[int, PartitionLedger] = {}

    def take(self, customer_id: str, key: str, period: Period, at: datetime, limit: int, perk_id: str) -> Take:
        """`BudgetLedger.take`, in the customer's partition's ledger."""
        ledger = self.of_partition(partition_of(customer_id, self.partitions))
        return ledger.take(customer_id, key, period, at, limit, perk_id)

    def of_partition(self, partition: int) -> PartitionLedger:
        """Partition `partition`'s ledger (a new, empty one the first time)."""
        ledger = self.by_partition.get(partition)
        if ledger is None:
            ledger = self.by_partition[partition] = PartitionLedger(partition, self.partitions)
        return ledger

    def restore(self, raw: bytes) -> PartitionLedger:
        """Take back a partition's ledger saved with `PartitionLedger.to_json` (replacing what is held for it)."""
        ledger = PartitionLedger.from_json(raw)
        if ledger.partitions != self.partitions:
            raise BudgetError(
                f"the perk budget ledger of partition {ledger.partition} was kept for {ledger.partitions} partitions, "
                f"the topics have {self.partitions}: each partition's share of a budget would change"
            )
        self.by_partition[ledger.partition] = ledger
        return ledger

    def drop(self, partition: int) -> None:
        """Forget a partition's ledger (its partition went to another worker)."""
        self.by_partition.pop(partition, None)
