"""Local tables are kept after a clean stop and discarded after a crash (then restored from the changelog), and
kept only while the broker still has the changelog they were built from (issue 16)."""

from __future__ import annotations

from pathlib import Path

import rocksdict

from engine.settings import load_settings
from engine.stream.faust_fixes.local_tables import mark_clean_stop, open_local_state, persisted_offsets
from engine.stream.local_state import (
    REBUILD,
    Changelog,
    Origin,
    check_local_tables,
    read_origin,
    stale_reason,
    write_origin,
)


def test_tables_written_changelog_first_survive_a_crash(tmp_path: Path) -> None:
    tables = tmp_path / "v1" / "tables"
    assert open_local_state(tables, tmp_path) is False  # first start: nothing there
    (tables / "customers-0.db").mkdir(parents=True)
    (tables / "customers-0.db" / "CURRENT").write_text("x")
    # the worker runs, then is killed: no clean-stop marker, but its tables never ran ahead of the changelog
    assert open_local_state(tables, tmp_path) is False and (tables / "customers-0.db").is_dir()


def test_older_tables_survive_a_clean_stop_and_not_a_crash(tmp_path: Path) -> None:
    """Tables a worker wrote before issue 18 (no changelog-first marker) may be ahead of the changelog."""
    tables = tmp_path / "v1" / "tables"
    (tables / "customers-0.db").mkdir(parents=True)
    (tables / "customers-0.db" / "CURRENT").write_text("x")
    mark_clean_stop(tmp_path)
    assert open_local_state(tables, tmp_path) is False and (tables / "customers-0.db").is_dir()
    (tmp_path / "changelog-first").unlink()  # as an older worker left them, then killed
    assert open_local_state(tables, tmp_path) is True
    assert not tables.exists() and (tmp_path / "v1").is_dir()  # only Faust's table directory goes
    assert (tmp_path / "changelog-first").exists()  # what is written from now on is changelog first


# Kept tables must still match the broker's changelog (issue 16): `stale_reason` decides, with no broker.

CLUSTER, OTHER = "L-A6scisRkmYHymLVHGSqQ", "PwGCeqJBRXS1UQL8AJuuTg"
TOPIC = "escalera-customers-changelog"
ORIGIN = Origin(CLUSTER, {TOPIC: "dd086095-afa7-4408-b68f-fab66a66f0ee"})


def now(*ends: int, topic_id: str | None = "dd086095-afa7-4408-b68f-fab66a66f0ee") -> dict[str, Changelog | None]:
    return {TOPIC: Changelog(topic_id, dict(enumerate(ends)))}


def test_tables_within_their_changelog_are_kept() -> None:
    applied = {TOPIC: {0: 14, 1: 16}}
    assert stale_reason(ORIGIN, CLUSTER, now(15, 40), applied) is None  # offset 14 is partition 0's last record
    assert stale_reason(None, CLUSTER, now(15, 40), applied) is None  # a data directory from before the record
    assert stale_reason(ORIGIN, CLUSTER, now(15, 40, topic_id=None), applied) is None  # a broker without topic ids
    assert stale_reason(ORIGIN, CLUSTER, now(0, 0), {TOPIC: {}}) is None  # nothing applied yet
    assert stale_reason(ORIGIN, OTHER, now(0, 0), {}) is None  # no local tables: nothing to discard


def test_tables_from_another_cluster_are_discarded_whatever_their_offsets() -> None:
    reason = stale_reason(ORIGIN, OTHER, now(15, 40), {TOPIC: {0: 14}})
    assert reason is not None
    assert reason.startswith(f"were built from another Kafka cluster (id {CLUSTER}; this one is {OTHER}): discarding")
    assert "ESCALERA_BOOTSTRAP_SERVERS" in reason


def test_tables_of_a_changelog_deleted_since_are_discarded_even_if_the_new_one_is_longer() -> None:
    reason = stale_reason(ORIGIN, CLUSTER, now(900, 900, topic_id="f3718845-3057-49de-88e3-8b898576c645"),
                          {TOPIC: {0: 14}})  # fmt: skip
    assert reason is not None and "which was deleted since" in reason and "f3718845" in reason


def test_tables_ahead_of_their_changelog_are_discarded() -> None:
    # Faust crashes on this one (ConsistencyError: 563 > -1) ...
    reason = stale_reason(None, CLUSTER, now(0, 0, 0), {TOPIC: {0: 3, 2: 563}})
    assert reason == (
        f"have applied changelog {TOPIC} partition 0 up to offset 3, but that partition ends at offset 0 (and 1 more "
        "partition): discarding them, the worker rebuilds them from this cluster's changelog; customer states the "
        "broker no longer has are lost with them"
    )
    # ... and silently reads a changelog of one record on top of the table (its check skips a highwater of 0)
    assert stale_reason(None, CLUSTER, now(1), {TOPIC: {0: 1}}) is not None
    assert "does not exist on this cluster" in str(stale_reason(None, CLUSTER, now(5), {TOPIC: {1: 3}}))


def test_tables_whose_changelog_topic_is_missing_are_discarded() -> None:
    reason = stale_reason(ORIGIN, CLUSTER, {TOPIC: None}, {TOPIC: {0: 3}})
    assert reason == f"were built from changelog topic {TOPIC}, which this cluster does not have: {REBUILD}"


def test_the_origin_is_recorded_in_the_data_directory(tmp_path: Path) -> None:
    assert read_origin(tmp_path) is None
    write_origin(tmp_path / "data", ORIGIN)
    assert read_origin(tmp_path / "data") == ORIGIN
    (tmp_path / "data" / "kafka-origin.json").write_text("{not json")
    assert read_origin(tmp_path / "data") is None  # as if never recorded: the offsets still decide


def test_persisted_offsets_are_read_from_the_partition_stores(tmp_path: Path) -> None:
    for partition, offset in ((0, b"14"), (3, None)):
        db = rocksdict.Rdict(str(tmp_path / f"customers-{partition}.db"), options=rocksdict.Options(raw_mode=True))
        db[b"c-1"] = b"{}"
        if offset is not None:
            db[b"__faust\0offset__"] = offset  # faust/stores/rocksdb.py Store.set_persisted_offset
        db.close()
    (tmp_path / "customers-backups").mkdir()
    assert persisted_offsets(tmp_path, "customers") == {0: 14}
    assert persisted_offsets(tmp_path, "other") == {}
    assert persisted_offsets(tmp_path / "missing", "customers") == {}


def test_the_memory_store_has_no_local_tables_to_check(tmp_path: Path) -> None:
    settings = load_settings({"ESCALERA_TABLE_STORE": "memory", "ESCALERA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert check_local_tables(settings, tmp_path, {TOPIC: "customers"}) is False  # and no broker was asked
