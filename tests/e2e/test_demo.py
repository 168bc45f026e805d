"""`escalera demo`, the README's main command, runs end to end on a real local Kafka."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_the_demo_publishes_consumes_and_writes_its_outputs(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "engine.cli", "demo", "--customers", "60", "--rate", "5000", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "kafka ready at 127.0.0.1:" in result.stderr
    events = (out / "events.jsonl").read_bytes().splitlines()
    summary = json.loads((out / "summary.json").read_text())
    # Every simulated line came back from Kafka: accepted as an event or dead-lettered with a reason.
    assert summary["lines"] == len(events)
    assert summary["events"] + sum(summary["rejections"].values()) == len(events)
    assert summary["customers"] > 60 * 0.9
    assert sum(summary["perks_granted"].values()) == len((out / "perks.jsonl").read_text().splitlines()) > 0
    assert (out / "funnel.png").is_file()
    assert "outputs in" in result.stdout
