"""Run real `escalera worker` processes against the test broker, feed them events, read what they wrote."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer

from engine.broker import readback
from engine.broker.local import free_port
from engine.broker.publish import publish
from engine.broker.topics import ensure_topics
from engine.loyalty import DEFAULT_POLICY, CustomerState, DecisionEvent
from engine.offline.replay import Replay
from engine.settings import Settings, load_settings
from schemas.decoder import DecodeLimits
from schemas.events import EventRejected

ROOT = Path(__file__).resolve().parents[2]


def engine_env(bootstrap: str, partitions: int = 4, **extra: str) -> dict[str, str]:
    """ESCALERA_* variables of a test's own: app id, topics, event-time-only clock."""
    tag = uuid.uuid4().hex[:8]
    env = {
        "ESCALERA_BOOTSTRAP_SERVERS": bootstrap,
        "ESCALERA_APP_ID": f"escalera-{tag}",
        "ESCALERA_TOPIC_PARTITIONS": str(partitions),
        "ESCALERA_WALL_CLOCK_WHEN_IDLE": "false",
        "ESCALERA_TABLE_STORE": "rocksdb",
        "ESCALERA_LOG_LEVEL": "INFO",
    }
    for name in ("PURCHASES", "FEEDBACK", "CUSTOMERS", "PERKS", "TRANSITIONS", "DLQ"):
        env[f"ESCALERA_TOPIC_{name}"] = f"{name.lower()}-{tag}"
    return {**env, **extra}


def settings_of(env: dict[str, str]) -> Settings:
    return load_settings(env)


@dataclass
class WorkerProcess:
    """One `escalera worker` process with its own data directory, web port and log file."""

    process: subprocess.Popen[bytes]
    log: Path
    port: int

    def get(self, path: str) -> tuple[int, bytes]:
        """An HTTP GET on the worker's web port: status and body."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, as an operator or an orchestrator stops a worker; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"the worker did not stop within {timeout} s on SIGTERM; log: {self.tail()}") from None

    def kill(self) -> None:
        """SIGKILL: no chance to clean up."""
        self.process.kill()
        self.process.wait(30)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def start_worker(env: dict[str, str], workdir: Path, index: int = 1) -> WorkerProcess:
    """Start a worker; it runs until stopped."""
    data = workdir / f"worker-{index}"
    data.mkdir(parents=True, exist_ok=True)
    log = workdir / f"worker-{index}.log"
    full = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ESCALERA_")},
        **env,
        "ESCALERA_DATA_DIR": str(data / "tables"),
        "ESCALERA_WEB_PORT": str(port := free_port()),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "worker", "--tick", "0.2"],
        cwd=data, env=full, stdout=log.open("ab"), stderr=subprocess.STDOUT,  # a restart appends
    )  # fmt: skip
    return WorkerProcess(process, log, port)


@contextmanager
def running_workers(env: dict[str, str], workdir: Path, count: int = 1) -> Iterator[list[WorkerProcess]]:
    """Workers that are stopped (SIGTERM) on the way out, and must have stopped cleanly."""
    workers = [start_worker(env, workdir, index) for index in range(1, count + 1)]
    try:
        yield workers
    finally:
        codes = [worker.stop() for worker in workers]
    assert codes == [0] * count, f"workers exited with {codes}: {workers[0].tail()}"


def publish_lines(env: dict[str, str], lines: Iterable[bytes]) -> None:
    settings = settings_of(env)
    ensure_topics(settings)
    report = publish(iter(list(lines)), settings)
    assert report.failed == 0, report.first_error


def read_all(bootstrap: str, topic: str, quiet: float = 2.0) -> list[tuple[bytes | None, bytes | None]]:
    """Every record of a topic, read until nothing new comes for `quiet` seconds."""
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False,
        consumer_timeout_ms=int(quiet * 1000),
    )  # fmt: skip
    records = [(message.key, message.value) for message in consumer]
    consumer.close()
    return records


def table_states(bootstrap: str, env: dict[str, str]) -> dict[str, CustomerState]:
    """The customer table as its changelog holds it (see `engine.broker.readback`); `env` names the broker too."""
    return readback.table_states(settings_of(env), quiet_seconds=1.5)


def comparable(state: CustomerState) -> dict[str, Any]:
    """Everything a state holds but its recent-decision log (which also lists the worker's volume updates
    against partial populations while partitions were still catching up)."""
    data: dict[str, Any] = orjson.loads(state.to_json())
    del data["decisions"]
    return data


def differences(engine: dict[str, CustomerState], replay: dict[str, CustomerState]) -> dict[str, Any]:
    """Customers whose states differ, with the differing fields."""
    found: dict[str, Any] = {}
    for customer_id in sorted(set(engine) | set(replay)):
        if customer_id not in engine or customer_id not in replay:
            found[customer_id] = "only in the engine" if customer_id in engine else "only in the replay"
            continue
        a, b = comparable(engine[customer_id]), comparable(replay[customer_id])
        if a != b:
            found[customer_id] = {key: (a[key], b[key]) for key in a if a[key] != b[key]}
    return found


@dataclass
class Reference:
    """What `escalera replay` makes of the same lines."""

    states: dict[str, CustomerState]
    decisions: list[DecisionEvent]
    rejected: list[EventRejected]

    @property
    def perk_ids(self) -> set[str]:
        return {d.perk_id for d in self.decisions if d.type == "perk.granted"}  # type: ignore[union-attr]


def replay_of(lines: Iterable[bytes]) -> Reference:
    decisions: list[DecisionEvent] = []
    rejected: list[EventRejected] = []
    replay = Replay(DEFAULT_POLICY, DecodeLimits(currencies=DEFAULT_POLICY.currencies), datetime.now(UTC),
                    decisions.append, rejected.append)  # fmt: skip
    for line in lines:
        replay.feed(line)
    replay.finish()
    return Reference(replay.states, decisions, rejected)


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(interval)


def wait_for_states(bootstrap: str, env: dict[str, str], expected: dict[str, CustomerState], timeout: float) -> None:
    """Until the worker's table equals `expected` (compared without the recent-decision log); else say how not."""
    deadline = time.monotonic() + timeout
    while found := differences(table_states(bootstrap, env), expected):
        if time.monotonic() > deadline:
            shown = dict(list(found.items())[:3])
            raise AssertionError(f"after {timeout:.0f} s, {len(found)} customers still differ from the replay: {shown}")
        time.sleep(1.0)
