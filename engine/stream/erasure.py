"""An erased customer leaves no copy in a worker's local files: the local half of erasure.

A worker compacts the local RocksDB database of a partition where it erased someone, within seconds, so the old
values leave its data files, write-ahead log and MANIFEST too (RocksDB keeps deleted values on disk until a
compaction reaches them).

The Kafka half is in the changelog topic's configuration (`engine.broker.topics.changelog_config`): the table
writes a tombstone for an erased customer, and Kafka's log cleaner removes the customer's earlier states, then the
tombstone, within the configured delay.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("escalera.erasure")


class LocalPurge:
    """The partitions whose local database holds erased customers' old values until it is compacted."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self.pending: set[int] = set()

    def erased_in(self, partition: int) -> None:
        """A customer of `partition` was erased: compact its database at the next purge."""
        self.pending.add(partition)

    async def purge(self) -> None:
        """Compact every pending partition's database (in a thread: the worker goes on)."""
        store = getattr(self.table, "data", None)
        databases = getattr(store, "_dbs", None)  # Faust's RocksDB store: one database per partition
        partitions, self.pending = self.pending, set()
        if databases is None:
            return  # the memory store keeps nothing on disk
        done = 0
        for partition in sorted(partitions):
            database = databases.get(partition)
            if database is None:
                continue  # given away meanwhile: its new owner erased the customer from its own copy
            try:
                await asyncio.to_thread(database.compact_range, None, None, _rewrite_every_file())
                # RocksDB's MANIFEST still names the erased keys as bounds of files compacted away; reopening
                # the database starts a new one (the table reads and writes through `_dbs` at every access)
                if databases.get(partition) is database:
                    database.close()
                    databases[partition] = store._open_for_partition(partition)  # type: ignore[union-attr]
                done += 1
            except Exception:  # a database closed by a rebalance meanwhile: try again later
                log.warning("could not compact the local table files of partition %d", partition, exc_info=True)
                self.pending.add(partition)
        if done:
            log.info("local table files compacted after erasures in %d partition(s)", done)


def _rewrite_every_file() -> Any:
    """Compaction options that rewrite even a lone file (RocksDB would only move it down a level, tombstones and
    all: a "trivial move")."""
    import rocksdict

    options = rocksdict.CompactOptions()
    options.set_bottommost_level_compaction(rocksdict.BottommostLevelCompaction.force())
    return options
