"""`escalera bootstrap` (issue 17): a three-year history seeded into the table, workers started on empty data
directories, a live tail published while they run, on default settings (the wall clock on). The workers must end
where `escalera replay` of history + tail ends (as of now), and publish exactly the decisions the replay makes after
the cutover — none of the history's unless asked. (A worker that streamed the same events from the start ends there
too: tests/integration/test_real_arrival.py.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from engine.broker.publish import publish
from engine.broker.seed import occupied
from engine.broker.topics import ensure_topics
from engine.loyalty import DEFAULT_POLICY
from engine.offline.replay import Replay
from engine.offline.simulation import SimulationSpec, simulate
from schemas.decoder import DecodeLimits
from tests.integration.engine_harness import (
    WorkerProcess,
    assert_published_as_replayed,
    engine_env,
    replay_as_of,
    running_workers,
    settings_of,
    wait_for_states,
    wait_until,
)

DAYS = 3 * 365


def bootstrap_command(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    full = {**{k: v for k, v in os.environ.items() if not k.startswith("ESCALERA_")}, **env}
    command = [sys.executable, "-m", "engine.cli", "bootstrap", *args]
    return subprocess.run(command, cwd=cwd, env=full, capture_output=True, text=True, timeout=300)


def occurred(line: bytes) -> datetime:
    return datetime.fromisoformat(orjson.loads(line)["occurred_at"].replace("Z", "+00:00"))


def history_and_tail(customers: int, seed: int) -> tuple[list[bytes], list[bytes]]:
    """Three years of a shop ending a minute ago, cut two days before the end; the tail repeats the history's last
    five lines (a live producer switched on a little early: the same event ids change nothing)."""
    ended = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    lines = list(simulate(SimulationSpec(customers=customers, days=DAYS, seed=seed, end=ended)))
    cut = ended - timedelta(days=2)
    history = [line for line in lines if occurred(line) < cut]
    tail = history[-5:] + [line for line in lines if occurred(line) >= cut]
    return history, tail


def historic_ids(history: list[bytes], before: datetime | None) -> set[str]:
    """The ids of the decisions the fold of `history` makes (before `before`, if given): never published."""
    ids: set[str] = set()

    def keep(decision: object) -> None:
        if before is None or decision.occurred_at < before:  # type: ignore[attr-defined]
            ids.add(decision.perk_id if decision.type == "perk.granted" else decision.event_id)  # type: ignore[attr-defined]

    replay = Replay(DEFAULT_POLICY, DecodeLimits(currencies=DEFAULT_POLICY.currencies), datetime.now(UTC), keep,
                    lambda _: None)  # fmt: skip
    for line in history:
        replay.feed(line)
    return ids


def _ready(worker: WorkerProcess) -> bool:
    try:
        return worker.get("/ready")[0] == 200
    except OSError:
        return False


@pytest.mark.parametrize(("workers", "publish_from_days_before_end"), [(1, None), (2, 30)])
def test_workers_seeded_by_bootstrap_end_where_the_replay_of_history_and_live_tail_ends(
    bootstrap: str, tmp_path: Path, workers: int, publish_from_days_before_end: int | None
) -> None:
    env = engine_env(bootstrap)
    del env["ESCALERA_WALL_CLOCK_WHEN_IDLE"]  # default settings: the wall clock on
    settings = settings_of(env)
    history, tail = history_and_tail(customers=120, seed=3 + workers)
    (tmp_path / "history.jsonl").write_bytes(b"\n".join(history) + b"\n")
    args = ["history.jsonl", "--out", "seeded"]
    publish_from = None
    if publish_from_days_before_end is not None:
        publish_from = occurred(history[-1]) - timedelta(days=publish_from_days_before_end)
        args += ["--publish-from", publish_from.isoformat()]
    ensure_topics(settings)
    seeded = bootstrap_command(env, *args, cwd=tmp_path)
    assert seeded.returncode == 0, seeded.stderr[-3000:]
    assert "Traceback" not in seeded.stderr
    held = historic_ids(history, publish_from)
    with running_workers(env, tmp_path, count=workers) as running:
        for worker in running:
            wait_until(lambda w=worker: _ready(w), 90, "the worker restored the seeded table and is ready")
        time.sleep(1)
        report = publish(iter(tail), settings, rate=200)  # the live producers, switched on
        assert report.failed == 0
        expected = replay_as_of(history + tail, datetime.now(UTC))
        wait_for_states(bootstrap, env, expected.states, timeout=150)
        assert all(worker.process.poll() is None for worker in running)
    # Published: the replay's decisions, less the history's held back at the cutover (none twice, none extra).
    expected.perk_ids -= held
    expected.transition_ids -= held
    expected.erasure_ids -= held
    published = assert_published_as_replayed(bootstrap, settings, expected)
    if publish_from is not None:  # the bootstrap published the history's decisions from the cutover on
        assert any(datetime.fromisoformat(d["occurred_at"]) < occurred(history[-1]) for d in published)
    audit = (tmp_path / "seeded" / "perks.jsonl").read_bytes().splitlines()
    assert {orjson.loads(line)["perk_id"] for line in audit} <= held


def test_bootstrap_refuses_live_workers_a_filled_table_a_history_out_of_order_and_another_policy(
    bootstrap: str, tmp_path: Path
) -> None:
    env = engine_env(bootstrap)
    history, _ = history_and_tail(customers=20, seed=9)
    (tmp_path / "history.jsonl").write_bytes(b"\n".join(history) + b"\n")
    shuffled = history[:10] + history[200:] + history[10:200]
    (tmp_path / "unsorted.jsonl").write_bytes(b"\n".join(shuffled) + b"\n")
    (tmp_path / "policy.yaml").write_text("ladder:\n  window_days: 300\n")
    ensure_topics(settings_of(env))

    def refused(*args: str, **extra: str) -> str:
        result = bootstrap_command({**env, **extra}, *args, cwd=tmp_path)
        assert result.returncode == 2, result.stderr[-2000:]
        assert "Traceback" not in result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("escalera: "), result.stderr
        return lines[0]

    message = refused("unsorted.jsonl")
    first_out_of_order = 10 + len(history[200:]) + 1  # history[10], after the history's end
    assert f"unsorted.jsonl line {first_out_of_order}:" in message and "sort the history by occurred_at" in message
    message = refused("history.jsonl", "--policy", "policy.yaml")
    assert "is not the one the workers will run" in message and "ESCALERA_POLICY_FILE" in message
    assert occupied(settings_of(env)).empty  # nothing was written by any refusal
    first = bootstrap_command(env, "history.jsonl", "--out", "seeded", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    message = refused("history.jsonl")
    assert "not empty" in message and "--replace deletes them first" in message
    with running_workers(env, tmp_path) as running:
        wait_until(lambda: _ready(running[0]), 90, "the worker is ready")
        message = refused("history.jsonl", "--replace")
        assert "live member" in message and "stop every `escalera worker`" in message
    again = bootstrap_command(env, "history.jsonl", "--replace", "--out", "again", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "--replace: deleting" in again.stderr
    assert (tmp_path / "again" / "customers.jsonl").read_bytes() == (
        tmp_path / "seeded" / "customers.jsonl"
    ).read_bytes()


def test_ctrl_c_during_the_fold_writes_nothing_and_says_so_in_one_line(bootstrap: str, tmp_path: Path) -> None:
    env = engine_env(bootstrap)
    history, _ = history_and_tail(customers=1500, seed=5)
    (tmp_path / "history.jsonl").write_bytes(b"\n".join(history) + b"\n")
    ensure_topics(settings_of(env))
    full = {**{k: v for k, v in os.environ.items() if not k.startswith("ESCALERA_")}, **env}
    command = [sys.executable, "-m", "engine.cli", "bootstrap", "history.jsonl"]
    err = tmp_path / "stderr.txt"
    with err.open("w") as stderr:
        # Ctrl-C as at a terminal: a test run started in the background of a shell without job control (`make test &`)
        # hands its children SIGINT ignored, and Python then never raises KeyboardInterrupt (the bootstrap ran on)
        running = subprocess.Popen(command, cwd=tmp_path, env=full, stdout=subprocess.PIPE, stderr=stderr,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
        wait_until(lambda: (tmp_path / "escalera-bootstrap" / "perks.jsonl").exists(), 60, "the fold began", 0.1)
        time.sleep(0.5)
        running.send_signal(signal.SIGINT)  # what Ctrl-C does
        running.wait(60)
    said = err.read_text()
    assert running.returncode == 130 and "Traceback" not in said, said[-2000:]
    if "while folding the history: nothing was written to Kafka" in said:
        assert occupied(settings_of(env)).empty
    else:  # the fold was over already: the writes were interrupted, and the way out is named
        assert "run it again with --replace before starting any worker" in said, said
