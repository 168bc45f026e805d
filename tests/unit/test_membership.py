"""What a worker records of its group membership, and when it leaves a recorded member alone (the removal itself
runs against a real broker in tests/integration/test_membership.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.settings import load_settings
from engine.stream.membership import MEMBER, record_member, recorded_member, remove_crashed_member, tables_in_use


def test_the_recorded_member_is_the_last_one_and_only_for_its_own_group(tmp_path: Path) -> None:
    assert recorded_member(tmp_path, "escalera") is None
    record_member(tmp_path, "escalera", "m-1")
    record_member(tmp_path, "escalera", "m-2")
    assert recorded_member(tmp_path, "escalera") == "m-2"
    assert recorded_member(tmp_path, "another-app") is None  # ESCALERA_APP_ID changed: not this group's member
    (tmp_path / MEMBER).write_bytes(b'{"group": "escalera"')  # cut short
    assert recorded_member(tmp_path, "escalera") is None


def no_broker_asked(*_: object, **__: object) -> None:
    raise AssertionError("the broker was asked to remove a member")


def test_tables_locked_by_another_process_are_in_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("kafka.admin.KafkaAdminClient", no_broker_asked)
    table = tmp_path / "customers-0.db"
    table.mkdir()
    (table / "LOCK").touch()
    assert not tables_in_use(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys; f = open(sys.argv[1], 'rb+'); fcntl.lockf(f, fcntl.LOCK_EX); "
         "print('locked', flush=True); sys.stdin.read()", str(table / "LOCK")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        assert tables_in_use(tmp_path)
        settings = load_settings({"ESCALERA_DATA_DIR": str(tmp_path), "ESCALERA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
        record_member(tmp_path, settings.app_id, "m-1")
        # a running worker's member is not removed: no broker is asked
        assert remove_crashed_member(settings, tmp_path, clean_stop=False) is None
    finally:
        holder.communicate("")
    assert not tables_in_use(tmp_path)


def test_nothing_is_removed_after_a_clean_stop_or_without_a_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("kafka.admin.KafkaAdminClient", no_broker_asked)
    settings = load_settings({"ESCALERA_DATA_DIR": str(tmp_path), "ESCALERA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert remove_crashed_member(settings, tmp_path, clean_stop=False) is None  # nothing recorded
    record_member(tmp_path, settings.app_id, "m-1")
    assert remove_crashed_member(settings, tmp_path, clean_stop=True) is None
