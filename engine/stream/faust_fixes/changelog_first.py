"""A table's local store never runs ahead of its changelog: a state goes to the changelog first, and into the local
store (RocksDB) only once Kafka has it, with the store's persisted offset moved after it. So a worker killed at any
point restarts on the tables it kept, and Faust's recovery brings them up to the changelog (issue 18).

Faust writes a table change to the local store at once and to the changelog through the producer
(`Table.on_key_set`, faust/tables/table.py), and records each delivered changelog offset in the store as soon as it
is delivered (`Collection._on_changelog_sent`, faust/tables/base.py). A worker killed in between leaves a store
holding states the changelog never got (their events then looked already seen when read again: RELIABILITY.md,
finding 4), which is why the local tables used to be discarded after every unclean stop and rebuilt from the
changelog: 8 minutes at a million customers in issue 5, 45 s in issue 18. Kafka Streams wipes a task's state after
an unclean shutdown under exactly-once for the same reason (KIP-892 is its way out: a transactional state store).

Here, in order: the changelog record is sent (`write`); once delivered, the state is put into its partition's RocksDB
database and, after every delivered write of that partition is in, the persisted offset is moved to the last one
(`settle`). What a kill can leave is then always safe: a state not yet delivered is in neither (its event is read
again and decided again, at-least-once); a state delivered but not yet stored, or stored but its offset not yet
moved, is behind the persisted offset's promise no more than Faust's recovery repairs, since it reads the changelog
from the persisted offset on. Until stored, a state is read from `unstored` (the worker's cache keeps it anyway).
Faust's own persisted-offset callback is switched off for the table, its recovery left as it is.

Tested by tests/unit/test_changelog_first.py and, with kills at random points and the data directory kept, by
tests/reliability/test_crash.py.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from faust.stores.rocksdb import Store as RocksDBStore


class ChangelogFirst:
    """The writes of one Faust table (keys and values raw bytes, RocksDB store) sent to the changelog and waiting for
    delivery, in the order sent."""

    def __init__(self, table: Any) -> None:
        self.table = table  # its store is made by Faust when first used: made here, it would create its folder
        self.pending: deque[tuple[Any, int, bytes, bytes | None]] = deque()  # (future, partition, key, value)
        self.unstored: dict[bytes, bytes | None] = {}  # key -> its latest value sent, not yet in the store
        table._on_changelog_sent = _persisted_by_settle

    @property
    def store(self) -> RocksDBStore:
        return self.table.data  # type: ignore[no-any-return]

    @staticmethod
    def applies(table: Any) -> bool:
        """Whether `table` keeps a local store on disk (RocksDB): the memory store has nothing to keep. Told from the
        store's URL (`Collection._new_store`), without making the store: Faust's RocksDB store creates a folder in
        the table directory when made, before the worker has decided whether to keep what is there."""
        app = getattr(table, "app", None)
        url = getattr(table, "_store", None) or getattr(getattr(app, "conf", None), "store", None)
        return url is not None and str(url).startswith("rocksdb:")

    def write(self, partition: int, key: bytes, value: bytes | None) -> None:
        """Send a state (None: a tombstone) to the changelog partition `partition`; stored once delivered."""
        future = self.table.send_changelog(partition, key, value, key_serializer="raw", value_serializer="raw")
        self.pending.append((future, partition, key, value))
        self.unstored[key] = value

    def settle(self, owned: set[int]) -> None:
        """Store every write delivered so far, in the order sent (a write not yet delivered stops it, later ones
        wait), then move each partition's persisted offset to its last one stored. Writes of partitions no longer
        owned are dropped: their new owner reads them from the changelog."""
        offsets: dict[Any, int] = {}
        while self.pending and self.pending[0][0].done():
            future, partition, key, value = self.pending.popleft()
            result = future.result()  # a failed delivery raises: the batch is not committed, its events come again
            if self.unstored.get(key, b"") is value:
                del self.unstored[key]  # the latest value sent for the key (a later one may still be pending)
            if partition not in owned:
                continue
            db = self.store._db_for_partition(partition)
            if value is None:
                db.delete(key)
                self.store._key_index.pop(key, None)
            else:
                db.put(key, value)
                self.store._key_index[key] = partition
            offsets[result.topic_partition] = result.offset
        for tp, offset in offsets.items():
            self.store.set_persisted_offset(tp, offset)

    def stored_in(self, partitions: Iterable[int], leave_out: bytes | None = None) -> Iterator[tuple[int, bytes]]:
        """(partition, value) of every key the local store holds for `partitions`, read from each partition's own
        database (Faust keeps one per partition, `Store._db_for_partition`; its offset key left out, and the keys
        starting with `leave_out`): no key hashed to find its partition, none decoded through Faust's serializers —
        10 µs a state through `Table.items()` with the partition hashed, at a million customers in bench/restore.py
        (issue 18)."""
        store = self.store
        for partition in partitions:
            for key, value in store._db_for_partition(partition).items():
                if key != store.offset_key and (leave_out is None or not key.startswith(leave_out)):
                    yield partition, value

    def stored(self, partition: int, key: bytes) -> bytes | None:
        """The latest value written for `key` in partition `partition`: sent and not yet stored, else the one its
        database holds (None: none, or deleted)."""
        if key in self.unstored:
            return self.unstored[key]
        return self.store._db_for_partition(partition).get(key)  # type: ignore[no-any-return]

    def forget(self, owned: set[int]) -> None:
        """After a rebalance: pending writes of partitions given away are their new owner's (in the changelog)."""
        self.pending = deque(entry for entry in self.pending if entry[1] in owned)
        kept = {key for _, _, key, _ in self.pending}
        self.unstored = {key: value for key, value in self.unstored.items() if key in kept}


def _persisted_by_settle(future: Any) -> None:
    """Faust's per-record persisted-offset callback, off: `ChangelogFirst.settle` moves it after the store write."""
