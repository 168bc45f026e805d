"""Two workers share the partitions; one is killed: the survivor takes its partitions over and the final state is
still the replay's. Then a broker restart mid-stream: the worker reconnects by itself and ends where the replay ends."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import orjson

from engine.broker.local import free_port, start_broker
from engine.broker.readback import committed_records
from tests.integration.engine_harness import (
    WorkerProcess,
    engine_env,
    publish_lines,
    running_workers,
    settings_of,
    start_worker,
    wait_for_states,
    wait_until,
)
from tests.reliability.faults import FAST_FAILOVER, PARTITIONS, alive, published_once_each, shop


def ownership(worker: WorkerProcess) -> list[tuple[float, list[int]]]:
    """When the worker took which partitions (epoch seconds), from its log."""
    found = []
    for line in worker.log.read_text(errors="replace").splitlines():
        if "owning partitions" in line and line.startswith("{"):
            record = orjson.loads(line)
            partitions = re.findall(r"\d+", record["message"].split("[", 1)[1])
            found.append((datetime.fromisoformat(record["timestamp"]).timestamp(), [int(p) for p in partitions]))
    return found


def sharing(*workers: WorkerProcess) -> bool:
    """Each worker's latest assignment is two of the four partitions."""
    return all(len(found[-1][1]) == 2 for found in map(ownership, workers) if found) and all(
        ownership(worker) for worker in workers
    )


def test_two_workers_one_killed_the_survivor_takes_over_and_ends_where_the_replay_ends(
    bootstrap: str, tmp_path: Path, report: Callable[..., None]
) -> None:
    lines, reference = shop(1000, seed=31)
    env = engine_env(bootstrap, PARTITIONS, **FAST_FAILOVER)
    settings = settings_of(env)
    publish_lines(env, lines)
    survivor, victim = start_worker(env, tmp_path, 1), start_worker(env, tmp_path, 2)
    try:
        wait_until(lambda: sharing(survivor, victim), 120, "both workers own two partitions")
        wait_until(lambda: committed_records(settings) >= len(lines) // 4, 120, "a quarter committed", 0.2)
        alive(victim)
        victim.kill()
        killed_at, committed_at_kill = time.time(), committed_records(settings)
        wait_until(lambda: any(p == [0, 1, 2, 3] for _, p in ownership(survivor)), 120, "the survivor owns all")
        took_over = next(at for at, p in ownership(survivor) if p == [0, 1, 2, 3]) - killed_at
        wait_for_states(bootstrap, env, reference.states, 240)
        alive(survivor)
    finally:
        if victim.process.poll() is None:
            victim.kill()
        assert survivor.stop() == 0, survivor.tail()
    figures = published_once_each(bootstrap, env, reference)
    report(events=len(lines), committed_at_kill=committed_at_kill, takeover_seconds=round(took_over, 1), **figures)


def test_a_broker_restart_mid_stream_the_worker_reconnects_and_ends_where_the_replay_ends(
    tmp_path: Path, report: Callable[..., None]
) -> None:
    port, controller = free_port(), free_port()
    broker = start_broker(data_dir=tmp_path / "kafka", port=port, controller_port=controller)
    try:
        lines, reference = shop(1500, seed=41)
        env = engine_env(broker.bootstrap_servers, PARTITIONS)
        settings = settings_of(env)
        publish_lines(env, lines)  # all in first: the restart hits the worker while it processes them
        with running_workers(env, tmp_path / "workers") as (worker,):
            wait_until(lambda: committed_records(settings) >= len(lines) // 4, 120, "a quarter committed", 0.2)
            broker.stop()
            stopped = time.monotonic()
            time.sleep(5)
            broker = start_broker(data_dir=tmp_path / "kafka", port=port, controller_port=controller)
            down = time.monotonic() - stopped
            wait_for_states(broker.bootstrap_servers, env, reference.states, 240)
            alive(worker)
        figures = published_once_each(broker.bootstrap_servers, env, reference)
        report(events=len(lines), broker_down_seconds=round(down, 1), **figures)
    finally:
        broker.stop()
