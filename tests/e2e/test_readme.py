"""The README's quick start works when pasted as written, twice in the same folder, as a newcomer runs it (issue 16:
the README's commands were "command not found" after `make demo`, and every second `make demo` crashed)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.e2e.test_demo import assert_the_demo_ended_where_the_replay_ends

ROOT = Path(__file__).resolve().parents[2]


def quick_start() -> str:
    """The fenced bash blocks of the README's "Quick start" section, as one script."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    assert blocks, "the README's quick start has no bash block"
    return "".join(blocks)


def checkout(folder: Path) -> Path:
    """A folder that looks like this clone to `make` (its Makefile, its set-up .venv), where outputs can land."""
    for name in ("Makefile", "pyproject.toml", ".venv"):
        (folder / name).symlink_to(ROOT / name)
    return folder


def test_the_quick_start_runs_as_written_twice_in_the_same_folder(tmp_path: Path) -> None:
    script = quick_start()
    assert script.startswith("make demo") and "source .venv/bin/activate" in script
    here = checkout(tmp_path)
    for run in ("first", "second"):
        result = subprocess.run(
            ["bash", "-c", "set -euo pipefail\n" + script], cwd=here, capture_output=True, text=True, timeout=600
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, (run, output[-3000:])
        assert "Traceback" not in output, (run, output[-3000:])
        assert "customers equal the replay's in every field" in result.stderr, (run, result.stderr[-2000:])
        assert (here / "escalera-replay" / "summary.json").is_file()
        assert "loyalty policy, version" in result.stdout  # `escalera policy show`
        assert "kafka ready at 127.0.0.1:" in result.stderr and "worker exit code 0" in result.stderr
        assert_the_demo_ended_where_the_replay_ends(here / "escalera-demo")
    # The demo's closing hint is a command that works when pasted here as it is printed.
    hint = re.search(r"`([^`]*replay [^`]*)` gives the same customers", result.stdout)
    assert hint is not None, result.stdout[-1500:]
    assert hint.group(1).startswith(".venv/bin/escalera replay escalera-demo/events.jsonl"), hint.group(1)
    pasted = subprocess.run(["bash", "-c", hint.group(1)], cwd=here, capture_output=True, text=True, timeout=300)
    assert pasted.returncode == 0, pasted.stderr[-2000:]
    assert "customers (" in pasted.stdout
