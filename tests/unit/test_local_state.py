"""Local tables are kept after a clean stop and discarded after a crash (then restored from the changelog)."""

from __future__ import annotations

from pathlib import Path

from engine.stream.faust_fixes.local_tables import mark_clean_stop, open_local_state


def test_tables_survive_a_clean_stop_and_not_a_crash(tmp_path: Path) -> None:
    tables = tmp_path / "v1" / "tables"
    assert open_local_state(tables, tmp_path) is False  # first start: nothing there
    (tables / "customers-0.db").mkdir(parents=True)
    (tables / "customers-0.db" / "CURRENT").write_text("x")
    mark_clean_stop(tmp_path)
    assert open_local_state(tables, tmp_path) is False and (tables / "customers-0.db").is_dir()
    # the worker runs, then is killed: no marker is left behind
    assert open_local_state(tables, tmp_path) is True
    assert not tables.exists() and (tmp_path / "v1").is_dir()  # only Faust's table directory goes
