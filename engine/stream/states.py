"""The customer states a worker reads and changes: a cache in front of Faust's table, written once per batch.

Faust's table reads and writes the partition of the stream's *current event* (RocksDB keeps a database per
partition, and a write goes to that partition of the changelog), while a batch and the event-time merge mix
partitions. So every table access here first makes the record it is done for the current event: this module
alone does so, and no caller has to remember it. Writing the states then puts back the current event Faust had:
while a batch awaits, Faust's reader may take the next record, make it the current event and pause; it files the
stream's current event into the next batch (`Stream.noack_take`, `add_to_buffer`), so a current event left
changed would hand the next batch an old record again and lose the new one (found by tests/reliability/test_crash.py:
an input waiting forever for a record it never got).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from engine.broker.partitioner import partition_of
from engine.broker.table_keys import PARTITION_PREFIX, is_partition_key
from engine.loyalty import CustomerState
from engine.stream.faust_fixes.changelog_first import ChangelogFirst
from engine.stream.ports import RecordStream, Table

CACHE_LIMIT = 100_000  # customer states kept in memory between batches at most


class BatchStates:
    """The states loaded and changed in this batch (by customer id), the record under whose partition each
    changed one is written, and the customers erased in it."""

    def __init__(self, table: Table, limit: int = CACHE_LIMIT) -> None:
        self.table, self.limit = table, limit
        self.cache: dict[str, CustomerState] = {}
        self.dirty: dict[str, Any] = {}  # customer_id -> the record whose partition their state is written under
        self.erased: set[str] = set()  # erased in this batch: gone, though the table holds them until written
        # A table on disk is written changelog first (`faust_fixes.changelog_first`): its local store never runs ahead
        # of the changelog, so a worker killed at any point keeps its tables.
        self.first = ChangelogFirst(table) if ChangelogFirst.applies(table) else None

    def cached(self, customer_id: str) -> CustomerState | None:
        """A state already in memory (no table read)."""
        return self.cache.get(customer_id)

    def load(self, stream: RecordStream, record: Any, customer_id: str) -> CustomerState | None:
        """A customer's state, kept in memory: it is about to change, or to be read again soon."""
        state = self._read(customer_id, stream, record)
        if state is not None:
            self.cache[customer_id] = state
        return state

    def peek(self, stream: RecordStream, record: Any, customer_id: str) -> CustomerState | None:
        """A customer's state without keeping it in memory (for passes over many customers)."""
        return self._read(customer_id, stream, record)

    def peek_any(self, customer_id: str) -> CustomerState | None:
        """A customer's state from whichever partition holds it, outside the stream (for the web pages)."""
        return self._read(customer_id)

    def _read(self, customer_id: str, stream: RecordStream | None = None, record: Any = None) -> CustomerState | None:
        """From memory, else from the table under `record`'s partition (without a stream: any partition)."""
        state = self.cache.get(customer_id)
        if state is None and customer_id not in self.erased:
            key = customer_id.encode()
            if self.first is not None and key in self.first.unstored:
                raw = self.first.unstored[key]  # sent to the changelog, not stored locally yet
            else:
                if stream is not None:
                    stream._set_current_event(record)
                raw = self.table.get(key)
            if raw is not None:
                state = CustomerState.decode(raw)
        return state

    def keep(self, customer_id: str, state: CustomerState, record: Any) -> None:
        """A customer's new state, written with the batch under `record`'s partition."""
        self.cache[customer_id] = state
        self.erased.discard(customer_id)  # erased, then back with a new event
        self.dirty[customer_id] = record

    def erase(self, customer_id: str, record: Any) -> None:
        """A customer is erased: a tombstone is written with the batch under `record`'s partition."""
        self.cache.pop(customer_id, None)
        self.erased.add(customer_id)
        self.dirty[customer_id] = record

    def write(
        self, stream: RecordStream, kept: set[int], ledgers: Iterable[tuple[int, Any, bytes, bytes]] = ()
    ) -> set[int]:
        """Write every state changed in this batch to the table (its changelog), once each, if its partition is still
        owned (one given away meanwhile is its new owner's to write: that owner reads its records again); return the
        partitions where a customer was erased. Faust's current event is put back afterwards.

        `ledgers`: (partition, a record of it, key, value) of the perk budget ledgers to save, each written to its
        partition before any state: see `Processor._ledgers_to_save` for why first."""
        arrived = stream.current_event
        erased_in: set[int] = set()
        first = self.first
        if first is not None:
            first.settle(kept)  # the previous batches' states Kafka has by now go into the local store
        for partition, record, key, value in ledgers:
            if partition not in kept:
                continue
            if first is not None:
                first.write(partition, key, value)
            else:
                stream._set_current_event(record)
                self.table[key] = value
        for customer_id, record in self.dirty.items():
            partition = record.message.partition
            if partition not in kept:
                self.cache.pop(customer_id, None)  # not written: if the partition comes back, read it again
                continue
            stream._set_current_event(record)
            key = customer_id.encode()
            state = self.cache.get(customer_id)
            if first is not None:
                if state is not None:
                    first.write(partition, key, state.encode())
                elif first.unstored.get(key) is not None or (key not in first.unstored and key in self.table):
                    first.write(partition, key, None)  # erasure: a tombstone in the changelog
                    erased_in.add(partition)
            elif state is not None:
                self.table[key] = state.encode()
            elif key in self.table:
                del self.table[key]  # erasure: a tombstone in the changelog
                erased_in.add(partition)
        stream.current_event = arrived
        self.dirty.clear()
        self.erased.clear()
        return erased_in

    def trim(self, stream: RecordStream, still_needed: Iterable[tuple[Any, str]]) -> None:
        """Keep memory bounded once every state is in the table: past the limit, forget them all but those of the
        queued records (`still_needed`: record and customer id; the referral frontier reads their states)."""
        if len(self.cache) <= self.limit:
            return
        self.cache.clear()
        arrived = stream.current_event
        for record, customer_id in still_needed:
            self.load(stream, record, customer_id)
        stream.current_event = arrived

    def forget(self, owned: set[int] | None = None) -> None:
        """After a rebalance: states are read from the table again (`owned`: the partitions kept, whose writes not yet
        stored locally are still read from memory)."""
        self.cache.clear()
        if self.first is not None and owned is not None:
            self.first.forget(owned)

    def stored_in(self, partitions: Iterable[int], count: int) -> Iterator[tuple[int, bytes]]:
        """(partition, stored state) of every customer the table holds in `partitions` (of `count`): from each
        partition's own database on disk, else the table's every item with its key's partition. The partitions'
        own keys (budget ledgers, policy versions), kept in the same table, are left out."""
        if self.first is not None:
            yield from self.first.stored_in(partitions, leave_out=PARTITION_PREFIX)
            return
        wanted = set(partitions)
        for key, raw in self.table.items():
            if (partition := partition_of(key, count)) in wanted and not is_partition_key(key):
                yield partition, raw

    def stored(self, partition: int, key: bytes) -> bytes | None:
        """What the table holds under `key` in partition `partition` (a budget ledger), outside the stream: written
        and not yet stored locally, else from the partition's database on disk; else the table's (the memory store
        holds each key once, whatever its partition)."""
        if self.first is not None:
            return self.first.stored(partition, key)
        return self.table.get(key)
