"""A worker's local tables are kept after a crash when they were written changelog first; older ones only after a
clean stop.

Faust writes a table change to the local store at once and to the changelog through the producer: a worker
killed in between leaves a local store ahead of the changelog, holding states whose events are not committed.
Read again, those events look already seen and change nothing, and the changelog never gets them (measured by
tests/reliability/test_crash.py). Kafka Streams wipes a task's local state after an unclean shutdown for the same
reason. Since issue 18 the worker writes its table changelog first (`faust_fixes.changelog_first`), so its local
tables are never ahead and are kept after a kill: Faust's recovery brings them up to the changelog. Tables written
before that (no `CHANGELOG_FIRST` marker in the data directory) are still trusted only after a clean stop, which
leaves the `MARKER`: a start without either discards them.

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
CHANGELOG_FIRST = "changelog-first"  # the local tables are written changelog first: kept after a crash


def open_local_state(tables: Path, data_dir: Path) -> bool:
    """Before the worker starts: keep the local tables (Faust's table directory) if they were written changelog
    first or the last stop was clean, else discard them. The clean-stop marker is removed, so that a crash from now
    on leaves none, and the changelog-first marker is left for the tables written from now on. Returns whether they
    went."""
    marker = data_dir / MARKER
    clean = marker.exists()
    if clean:
        marker.unlink()
    trusted = clean or (data_dir / CHANGELOG_FIRST).exists()
    went = False
    if not trusted and tables.is_dir() and any(tables.iterdir()):
        log.warning("the last stop was not clean and the local tables in %s were written before they were kept in "
                    "step with the changelog: discarding them, restoring from the changelog", tables)  # fmt: skip
        shutil.rmtree(tables)
        went = True
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / CHANGELOG_FIRST).touch()
    return went


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
