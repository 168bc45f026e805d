"""Simple mistakes at the command line end in one line naming the path to fix (exit 2), never a traceback; and the
small things a newcomer reaches for: `--version`, `validate -`, a progress bar on a terminal and only there.

Through the real entry point, as a subprocess (no broker needed); each run costs well under a second of imports.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from engine.cli.offline import file_errors
from engine.errors import EscaleraError

EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"


def _env(**extra: str) -> dict[str, str]:
    """This process's environment without any ESCALERA_* variable, plus `extra`."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("ESCALERA_")}, **extra}


def escalera(*args: str, cwd: Path, stdin: bytes | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "engine.cli", *args]
    result = subprocess.run(command, cwd=cwd, input=stdin, env=_env(**env), capture_output=True, timeout=60)
    return subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode(), result.stderr.decode())


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A working folder holding `blocker`, a file where the commands below are told to make a folder."""
    (tmp_path / "blocker").write_bytes((EXAMPLES / "purchase.completed.json").read_bytes().strip() + b"\n")
    return tmp_path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["simulate", "--customers", "5", "--out", "blocker/events.jsonl"],
            "cannot write --out blocker/events.jsonl: blocker is a file, not a directory",
        ),
        (
            ["replay", "blocker", "--out", "blocker/replayed"],
            "cannot write --out blocker/replayed: blocker is a file, not a directory",
        ),
        (
            ["schemas", "export", "blocker/schemas/json"],
            "cannot write the JSON Schemas into blocker/schemas/json: blocker is a file, not a directory",
        ),
        (
            ["schemas", "docs", "blocker/events.md"],
            "cannot write blocker/events.md: blocker is a file, not a directory",
        ),
        (["validate", "blocker/events.jsonl"], "cannot read blocker/events.jsonl: blocker is a file, not a directory"),
        (["validate", "."], "cannot read .: is a directory"),
        (["validate", "missing.jsonl"], "cannot read missing.jsonl: no such file or directory"),
        (["demo", "--out", "blocker/demo"], "cannot write --out blocker/demo: blocker is a file, not a directory"),
    ],
    ids=[
        "simulate",
        "replay",
        "schemas-export",
        "schemas-docs",
        "validate-under-a-file",
        "validate-dir",
        "missing",
        "demo",
    ],
)
def test_a_path_that_cannot_be_used_is_one_line_naming_it(folder: Path, args: list[str], message: str) -> None:
    result = escalera(*args, cwd=folder)
    assert (result.returncode, result.stderr) == (2, f"escalera: {message}\n")
    assert result.stdout == ""


def test_simulate_makes_the_folder_of_its_out_file_and_shows_no_progress_off_a_terminal(tmp_path: Path) -> None:
    # `simulate --out nodir/x.jsonl` was a 42-line traceback; like replay's --out and `schemas docs`, it makes it
    result = escalera("simulate", "--customers", "5", "--out", "nodir/deeper/x.jsonl", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = (tmp_path / "nodir" / "deeper" / "x.jsonl").read_bytes().splitlines()
    assert result.stdout == f"wrote {len(lines)} lines to nodir/deeper/x.jsonl\n"
    assert result.stderr == ""  # stderr is a pipe here: no bar, not even its last frame


def test_simulate_on_a_terminal_shows_its_progress(tmp_path: Path) -> None:
    controller, terminal = pty.openpty()
    command = [sys.executable, "-m", "engine.cli", "simulate", "--customers", "1500", "--out", "x.jsonl"]
    env = _env(TERM="xterm-256color", COLUMNS="120")
    with subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=terminal) as process:
        os.close(terminal)
        shown = b""
        while True:  # read the terminal as it goes, so that a full buffer never blocks the command
            ready, _, _ = select.select([controller], [], [], 60)
            try:
                chunk = os.read(controller, 1 << 16) if ready else b""
            except OSError:  # EIO: the command closed the terminal (exited)
                chunk = b""
            if not chunk:
                break
            shown += chunk
        assert process.wait(timeout=60) == 0
    os.close(controller)
    text = shown.decode(errors="replace")
    assert "simulating customers" in text and "1500/1500" in text
    assert "writing events" in text


def test_version_is_printed_even_when_a_setting_is_wrong(tmp_path: Path) -> None:
    result = escalera("--version", cwd=tmp_path, ESCALERA_TOPIC_PARTITIONS="many")
    assert (result.returncode, result.stdout, result.stderr) == (0, f"escalera {version('escalera')}\n", "")


def test_validate_reads_standard_input_for_a_dash(tmp_path: Path) -> None:
    good = json.loads((EXAMPLES / "feedback.received.json").read_text())
    guessed = {**good, "type": "feedback.submitted"}
    lines = b"".join(json.dumps(event).encode() + b"\n" for event in (good, guessed))
    result = escalera("validate", "-", cwd=tmp_path, stdin=lines)
    assert result.returncode == 1, result.stderr
    (report,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert report["line"] == 2 and report["reason"] == "unknown_type"
    assert "did you mean 'feedback.received'?" in report["message"]
    assert result.stderr == "2 lines: 1 valid, 1 rejected\n"


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (PermissionError(13, "Permission denied", "ro/x.jsonl"), "permission denied"),
        (OSError(30, "Read-only file system", "ro"), "read-only file system"),
        (OSError(28, "No space left on device"), "no space left on device"),  # a write names no file
    ],
)
def test_other_file_errors_are_told_in_the_systems_words(error: OSError, said: str) -> None:
    with pytest.raises(EscaleraError) as caught, file_errors("write --out", Path("ro/x.jsonl")):
        raise error
    assert str(caught.value) == f"cannot write --out ro/x.jsonl: {said}"


@pytest.mark.parametrize("error", [BrokenPipeError(32, "Broken pipe"), OSError(2, "No such file", "elsewhere.txt")])
def test_an_error_about_something_else_is_left_whole(error: OSError) -> None:
    with pytest.raises(type(error)), file_errors("write --out", Path("ro/x.jsonl")):
        raise error
