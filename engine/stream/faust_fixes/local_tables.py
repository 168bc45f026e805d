"""A worker's local tables are trusted only after a clean stop; after a crash they are rebuilt from the changelog.

Faust writes a table change to the local store at once and to the changelog through the producer: a worker
killed in between leaves a local store ahead of the changelog, holding states whose events are not committed.
Read again, those events look already seen and change nothing, and the changelog never gets them (measured by
tests/reliability/test_crash.py). Kafka Streams wipes a task's local state after an unclean shutdown for the same
reason. A clean stop leaves a marker; a start without it discards the local tables.

Kept tables must also still match the broker's changelog (issue 16): `persisted_offsets` reads how far each
partition's store has applied its changelog, which `engine.stream.local_state` compares with the broker.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

log = logging.getLogger("escalera.worker")

MARKER = "clean-stop"


def open_local_state(tables: Path, data_dir: Path) -> bool:
    """Before the worker starts: keep the local tables (Faust's table directory) if the last stop was clean, else
    discard them. The marker is removed, so that a crash from now on leaves none. Returns whether they went."""
    marker = data_dir / MARKER
    if marker.exists():
        marker.unlink()
        return False
    if not tables.is_dir() or not any(tables.iterdir()):
        return False
    log.warning("the last stop was not clean: discarding the local tables in %s, restoring from the changelog", tables)
    shutil.rmtree(tables)
    return True


def mark_clean_stop(data_dir: Path) -> None:
    """After a clean stop (every change delivered, offsets committed): the local tables can be trusted."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / MARKER).touch()


def persisted_offsets(tables: Path, table: str) -> dict[int, int]:
    """How far each local partition store of `table` has applied its changelog: partition -> the offset of the last
    record applied (Faust's `Store.persisted_offset`), for the partitions whose store holds one.

    Faust keeps partition p of table t in `<tabledir>/<t>-<p>.db` (`Store.partition_path`), a RocksDB database
    written through rocksdict in raw mode (`RocksDBOptions.open`); it is opened here read-only, before Faust
    opens it.
    """
    import rocksdict
    from faust.stores.rocksdb import Store

    name = re.compile(rf"{re.escape(table)}-([0-9]+)\.db")
    found: dict[int, int] = {}
    if not tables.is_dir():
        return found
    for path in sorted(tables.iterdir()):
        matched = name.fullmatch(path.name)
        if matched is None or not path.is_dir():
            continue
        db = rocksdict.Rdict(
            str(path), options=rocksdict.Options(raw_mode=True), access_type=rocksdict.AccessType.read_only()
        )
        try:
            offset = db.get(Store.offset_key)  # b"__faust\0offset__", the digits of an offset
        finally:
            db.close()
        if offset is not None:
            found[int(matched.group(1))] = int(offset)
    return found


def discard_tables(tables: Path) -> None:
    """Remove Faust's table directory: Faust then rebuilds every table from its changelog (and the changelog
    alone), as for a worker's first start."""
    shutil.rmtree(tables, ignore_errors=True)
