"""kill -9 at random points, as Kafka's own exactly-once system tests crash processes: restarted each time, the
worker ends where the replay ends, every expected perk is published, and no perk id stands for two perks."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.readback import committed_records
from engine.settings import Settings
from tests.integration.engine_harness import (
    WorkerProcess,
    engine_env,
    publish_lines,
    settings_of,
    start_worker,
    wait_for_states,
    wait_until,
)
from tests.reliability.faults import FAST_FAILOVER, PARTITIONS, alive, published_once_each, shop

pytestmark = pytest.mark.faults


def progressed(settings: Settings, target: int, worker: WorkerProcess) -> Callable[[], bool]:
    """The group has committed `target` inbound records, or the worker has stopped (then `alive` says why)."""
    return lambda: committed_records(settings) >= target or worker.process.poll() is not None


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
