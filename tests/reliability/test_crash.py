"""kill -9 at random points, as Kafka's own exactly-once system tests crash processes: restarted each time, the
worker ends where the replay ends, every expected perk is published, and no perk id stands for two perks."""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.readback import committed_records
from engine.settings import Settings
from engine.simulation import SimulationSpec, simulate
from tests.integration.engine_harness import (
    Reference,
    WorkerProcess,
    engine_env,
    publish_lines,
    read_all,
    replay_of,
    settings_of,
    start_worker,
    wait_for_states,
    wait_until,
)

pytestmark = pytest.mark.faults
PARTITIONS = 4
FAST_FAILOVER = {"ESCALERA_SESSION_TIMEOUT_SECONDS": "6"}  # a killed member leaves the group in 6 s, not 60


def shop(customers: int, seed: int) -> tuple[list[bytes], Reference]:
    lines = list(simulate(SimulationSpec(customers, 365, seed, duplicates=0.02, malformed=0.01)))
    return lines, replay_of(lines)


def published_once_each(bootstrap: str, env: dict[str, str], reference: Reference) -> dict[str, Any]:
    """Every perk the replay grants is on the perks topic, with the same customer, perk, cause and rule; no perk
    id stands for two perks; every rejected record is a dead letter. Returns how many copies arrived."""
    perks = [orjson.loads(v) for _, v in read_all(bootstrap, env["ESCALERA_TOPIC_PERKS"])]  # type: ignore[arg-type]
    meaning: dict[str, set[tuple[str, ...]]] = defaultdict(set)
    for perk in perks:
        meaning[perk["perk_id"]].add((perk["customer_id"], perk["perk"], perk["caused_by"], perk["rule"]))
    assert [pid for pid, kinds in meaning.items() if len(kinds) > 1] == []  # one id, one perk
    expected = {d.perk_id: (d.customer_id, d.perk, d.caused_by, d.rule)  # type: ignore[union-attr]
                for d in reference.decisions if d.type == "perk.granted"}  # fmt: skip
    assert {pid: next(iter(kinds)) for pid, kinds in meaning.items()} == expected  # none lost, none invented
    letters = [orjson.loads(v) for _, v in read_all(bootstrap, env["ESCALERA_TOPIC_DLQ"])]  # type: ignore[arg-type]
    unique = {letter["event_id"]: letter for letter in letters}
    got = Counter((letter["reason"], letter["payload"]) for letter in unique.values())
    assert got == Counter((r.reason, r.payload) for r in reference.rejected)
    transitions = read_all(bootstrap, env["ESCALERA_TOPIC_TRANSITIONS"])
    transition_ids = {orjson.loads(v)["event_id"] for _, v in transitions}  # type: ignore[arg-type]
    return {
        "perks_expected": len(expected),
        "perk_records": len(perks),
        "perk_duplicates": len(perks) - len(meaning),
        "dead_letters_expected": len(reference.rejected),
        "dead_letter_duplicates": len(letters) - len(unique),
        "transition_records": len(transitions),
        "transition_duplicates": len(transitions) - len(transition_ids),
    }


def progressed(settings: Settings, target: int, worker: WorkerProcess) -> Callable[[], bool]:
    """The group has committed `target` inbound records, or the worker has stopped (then `alive` says why)."""
    return lambda: committed_records(settings) >= target or worker.process.poll() is not None


def alive(worker: WorkerProcess) -> None:
    assert worker.process.poll() is None, f"the worker stopped by itself: {worker.tail()}"


def test_a_worker_killed_at_random_points_ends_where_the_replay_ends(
    bootstrap: str, tmp_path: Path, report: Callable[..., None]
) -> None:
    lines, reference = shop(2000, seed=21)
    assert len(lines) >= 20_000
    env = engine_env(bootstrap, PARTITIONS, **FAST_FAILOVER)
    settings = settings_of(env)
    publish_lines(env, lines)
    rng = random.Random(2026)
    kills: list[dict[str, Any]] = []
    began = time.monotonic()
    for run in range(6):
        # the same data directory each time (RocksDB kept, as after a crash), but a new one from the fourth run
        # on: then the table is rebuilt from its changelog alone
        worker = start_worker(env, tmp_path, index=1 if run < 3 else 2)
        started, before = time.monotonic(), committed_records(settings)
        if rng.random() < 0.3 or before > len(lines) - 4000:
            time.sleep(rng.uniform(0.5, 8.0))  # anywhere: start-up, restore, joining the group, processing
        else:
            target = before + rng.randint(1000, 3500)
            wait_until(progressed(settings, target, worker), 120, f"{target} records committed", 0.2)
            time.sleep(rng.uniform(0.0, 1.0))  # between two commits
        alive(worker)
        worker.kill()
        kills.append({"after_seconds": round(time.monotonic() - started, 1), "committed_before": before,
                      "committed_at_kill": committed_records(settings)})  # fmt: skip
    worker = start_worker(env, tmp_path, index=2)
    try:
        wait_for_states(bootstrap, env, reference.states, 300)
        alive(worker)
    finally:
        assert worker.stop() == 0, worker.tail()
    figures = published_once_each(bootstrap, env, reference)
    assert committed_records(settings) == len(lines)
    report(events=len(lines), customers=len(reference.states), kills=kills, seconds=round(time.monotonic() - began),
           **figures)  # fmt: skip
