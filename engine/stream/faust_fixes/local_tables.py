"""A worker's local tables are trusted only after a clean stop; after a crash they are rebuilt from the changelog.

Faust writes a table change to the local store at once and to the changelog through the producer: a worker
killed in between leaves a local store ahead of the changelog, holding states whose events are not committed.
Read again, those events look already seen and change nothing, and the changelog never gets them (measured by
tests/reliability/test_crash.py). Kafka Streams wipes a task's local state after an unclean shutdown for the same
reason. A clean stop leaves a marker; a start without it discards the local tables.
"""

from __future__ import annotations

import logging
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
