"""faust_fixes.changelog_first: a state reaches the local store only after the changelog has it, in the order sent,
and the persisted offset moves only after the store has it — so the local store is never ahead of the changelog."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from faust.types import TP

from engine.stream.faust_fixes.changelog_first import ChangelogFirst

CHANGELOG = "app-customers-changelog"


class Delivered:
    """What Kafka says of a delivered record."""

    def __init__(self, partition: int, offset: int) -> None:
        self.topic_partition, self.offset = TP(CHANGELOG, partition), offset


class Store:
    """The parts of Faust's RocksDB store used: one dict per partition database, the key index, persisted offsets;
    `log` is every change in the order made."""

    offset_key = b"__faust\x00offset__"

    def __init__(self) -> None:
        self.dbs: dict[int, Any] = {}
        self._key_index: dict[bytes, int] = {}
        self.log: list[tuple[str, Any, Any]] = []
        self.persisted: dict[TP, int] = {}

    def _db_for_partition(self, partition: int) -> Any:
        store = self

        class DB(dict[bytes, bytes]):
            def put(self, key: bytes, value: bytes) -> None:
                self[key] = value
                store.log.append(("put", key, value))

            def delete(self, key: bytes) -> None:
                self.pop(key, None)
                store.log.append(("delete", key, None))

        return self.dbs.setdefault(partition, DB())

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        self.persisted[tp] = offset
        self.log.append(("offset", tp.partition, offset))


class Table:
    def __init__(self) -> None:
        self.data = Store()
        self.sent: list[tuple[int, bytes, bytes | None, asyncio.Future[Delivered]]] = []
        self.loop = asyncio.new_event_loop()

    def send_changelog(self, partition: int, key: bytes, value: bytes | None, **_: Any) -> asyncio.Future[Delivered]:
        future: asyncio.Future[Delivered] = self.loop.create_future()
        self.sent.append((partition, key, value, future))
        return future

    def deliver(self, index: int, offset: int) -> None:
        partition, _, _, future = self.sent[index]
        future.set_result(Delivered(partition, offset))


def test_a_state_is_stored_only_once_delivered_and_the_offset_moves_after_it() -> None:
    table = Table()
    first = ChangelogFirst(table)
    first.write(0, b"ana", b"{1}")
    first.settle({0})
    assert table.data.log == []  # not delivered: nothing local, and the state is read from memory
    assert first.unstored == {b"ana": b"{1}"}
    table.deliver(0, 41)
    first.settle({0})
    assert table.data.log == [("put", b"ana", b"{1}"), ("offset", 0, 41)]
    assert first.unstored == {} and table.data._key_index == {b"ana": 0}


def test_writes_are_stored_in_the_order_sent_and_a_late_delivery_holds_the_later_ones() -> None:
    table = Table()
    first = ChangelogFirst(table)
    first.write(0, b"ana", b"{1}")
    first.write(1, b"bob", b"{2}")
    first.write(0, b"ana", b"{3}")
    table.deliver(1, 7)  # the second is delivered first: it waits for the first
    first.settle({0, 1})
    assert table.data.log == []
    table.deliver(0, 10)
    first.settle({0, 1})
    assert table.data.log == [("put", b"ana", b"{1}"), ("put", b"bob", b"{2}"), ("offset", 0, 10), ("offset", 1, 7)]
    assert first.unstored == {b"ana": b"{3}"}  # the latest value, still pending, is what is read
    table.deliver(2, 11)
    first.settle({0, 1})
    assert table.data.dbs[0][b"ana"] == b"{3}" and table.data.persisted[TP(CHANGELOG, 0)] == 11


def test_an_erasure_is_a_tombstone_sent_first_and_a_delete_once_delivered() -> None:
    table = Table()
    first = ChangelogFirst(table)
    first.write(0, b"ana", b"{1}")
    first.write(0, b"ana", None)
    assert first.unstored == {b"ana": None}
    table.deliver(0, 1)
    table.deliver(1, 2)
    first.settle({0})
    assert table.data.log == [("put", b"ana", b"{1}"), ("delete", b"ana", None), ("offset", 0, 2)]
    assert first.unstored == {} and b"ana" not in table.data._key_index


def test_writes_of_a_partition_given_away_are_left_to_its_new_owner() -> None:
    table = Table()
    first = ChangelogFirst(table)
    first.write(0, b"ana", b"{1}")
    first.write(1, b"bob", b"{2}")
    first.forget({0})
    assert [key for _, _, key, _ in first.pending] == [b"ana"] and first.unstored == {b"ana": b"{1}"}
    table.deliver(0, 5)
    table.deliver(1, 6)
    first.write(1, b"cid", b"{3}")  # the partition came back, then went again before delivery
    table.deliver(2, 7)
    first.settle({0})
    assert table.data.log == [("put", b"ana", b"{1}"), ("offset", 0, 5)]


def test_a_failed_delivery_is_raised_not_stored() -> None:
    table = Table()
    first = ChangelogFirst(table)
    first.write(0, b"ana", b"{1}")
    table.sent[0][3].set_exception(RuntimeError("the broker refused it"))
    with pytest.raises(RuntimeError, match="refused"):
        first.settle({0})
    assert table.data.log == []


def test_faust_no_longer_moves_the_persisted_offset_per_delivered_record() -> None:
    table = Table()
    ChangelogFirst(table)
    future = table.loop.create_future()
    future.set_result(Delivered(0, 9))
    table._on_changelog_sent(future)  # type: ignore[attr-defined]
    assert table.data.persisted == {}


def test_a_rocksdb_table_is_written_changelog_first_and_its_store_is_not_made_early(tmp_path: Any) -> None:
    """Faust's RocksDB store creates a folder in the table directory when made: made while the worker is built, a
    fresh start looked like local tables left by a crash (a WARNING in a healthy run's log)."""
    from engine.settings import load_settings
    from engine.stream.app import create_app
    from engine.stream.states import BatchStates

    for store, expected in (("rocksdb", True), ("memory", False)):
        settings = load_settings({"ESCALERA_DATA_DIR": str(tmp_path / store), "ESCALERA_TABLE_STORE": store})
        table = create_app(settings).customers
        states = BatchStates(table)
        assert (states.first is not None) is expected
        assert not (tmp_path / store).exists()  # nothing made on disk before the worker starts


def test_the_states_of_given_partitions_are_read_from_their_own_databases() -> None:
    table = Table()
    first = ChangelogFirst(table)
    for index, (partition, key) in enumerate([(0, b"ana"), (1, b"bo"), (2, b"cy"), (0, b"di")]):
        first.write(partition, key, key.upper())
        table.deliver(index, 10 + index)
    first.settle({0, 1, 2})
    table.data._db_for_partition(0)[table.data.offset_key] = b"13"  # Faust's persisted offset, not a state
    assert sorted(first.stored_in([0, 2])) == [(0, b"ANA"), (0, b"DI"), (2, b"CY")]
    assert list(first.stored_in([3])) == []


def test_keys_left_out_are_not_read_as_states_and_a_key_is_read_where_last_written() -> None:
    """A partition's budget ledger lives in the table beside its customers (engine/broker/table_keys.py): left out
    when the customers are learned, and read back from memory until stored, then from its partition's database."""
    table = Table()
    first = ChangelogFirst(table)
    first.write(0, b"ana", b"ANA")
    first.write(0, b"\x00budget/0", b"{1}")
    assert first.stored(0, b"\x00budget/0") == b"{1}"  # sent, not stored yet
    table.deliver(0, 10)
    table.deliver(1, 11)
    first.settle({0})
    assert first.stored(0, b"\x00budget/0") == b"{1}" and first.stored(1, b"\x00budget/1") is None
    assert list(first.stored_in([0], leave_out=b"\x00budget/")) == [(0, b"ANA")]
    assert sorted(first.stored_in([0])) == [(0, b"ANA"), (0, b"{1}")]
