"""`escalera demo`, the README's main command, runs end to end: local Kafka, a streaming worker, a simulated shop."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson

from engine.loyalty import DEFAULT_POLICY
from engine.loyalty.view import view
from engine.offline.replay import Replay
from schemas.decoder import DecodeLimits


def assert_the_demo_ended_where_the_replay_ends(out: Path) -> None:
    """The demo's outputs in `out` are what `escalera replay` makes of its events: every customer in every field,
    the perks and transitions by id, the dead letters (run by tests/e2e/test_readme.py on the default demo)."""
    decisions: list = []
    rejected: list = []
    replay = Replay(DEFAULT_POLICY, DecodeLimits(currencies=DEFAULT_POLICY.currencies), datetime.now(UTC),
                    decisions.append, rejected.append)  # fmt: skip
    for line in (out / "events.jsonl").read_bytes().splitlines():
        replay.feed(line)
    replay.finish()
    customers = [json.loads(line) for line in (out / "customers.jsonl").read_text().splitlines()]
    assert {c["customer_id"]: c["step"] for c in customers} == {cid: state.step for cid, state in replay.states.items()}
    # Every field, volume and the recent decisions included (volume is decided on event time: issue 15).
    expected = {cid: orjson.loads(orjson.dumps(view(state, DEFAULT_POLICY))) for cid, state in replay.states.items()}
    assert {c["customer_id"]: c for c in customers} == expected
    perks = [json.loads(line) for line in (out / "perks.jsonl").read_text().splitlines()]
    assert {p["perk_id"] for p in perks} == {d.perk_id for d in decisions if d.type == "perk.granted"}
    transitions = [json.loads(line) for line in (out / "transitions.jsonl").read_text().splitlines()]
    assert {t["event_id"] for t in transitions} == {d.event_id for d in decisions if d.type != "perk.granted"}
    letters = {json.loads(line)["event_id"] for line in (out / "rejected.jsonl").read_text().splitlines()}
    assert len(letters) == len(rejected) > 0
    assert (out / "funnel.png").is_file()


def test_ctrl_c_during_the_demo_stops_it_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    """Ctrl-C reaches the demo and its worker together (a terminal signals the whole process group): the demo stops
    both and the broker, says so in one line and exits with 130 (issue 16: "the worker stopped unexpectedly (exit
    code 0)" and a traceback)."""
    out = tmp_path / "demo"
    command = [sys.executable, "-m", "engine.cli", "demo", "--customers", "300", "--rate", "200", "--out", str(out)]
    err, log = tmp_path / "stderr.txt", tmp_path / "stdout.txt"
    with err.open("w") as stderr_file, log.open("w") as stdout_file:
        demo = subprocess.Popen(command, stderr=stderr_file, stdout=stdout_file, start_new_session=True)
        deadline = time.monotonic() + 300
        while "worker started" not in err.read_text() and time.monotonic() < deadline and demo.poll() is None:
            time.sleep(0.5)
        time.sleep(8)  # publishing, the worker busy
        os.killpg(demo.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        demo.wait(120)
    stderr = err.read_text()
    assert demo.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr and "unexpectedly" not in stderr, stderr[-3000:]
    message = f"demo interrupted: the worker and the local Kafka are stopped; what was written so far is in {out}/"
    assert message in stderr, stderr[-1500:]
    assert "customers" not in log.read_text()  # no ladder of a run cut short
    # Not a terminal: a line of progress every few seconds instead of the live view (issue 16: nothing appeared).
    assert re.search(r"\d+ s  worker: \d+/\d+ events committed, \d+ dead-lettered · outputs: ", stderr), stderr[-1500:]
