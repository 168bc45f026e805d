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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer
from prometheus_client.parser import text_string_to_metric_families

from engine.broker import readback
from engine.broker.local import free_port
from engine.broker.publish import publish
from engine.broker.topics import ensure_topics
from engine.loyalty import DEFAULT_POLICY, CustomerState, DecisionEvent
from engine.offline.compare import state_differences
from engine.offline.replay import Replay
from engine.settings import Settings, load_settings
from schemas.construct import flat_json
from schemas.decoder import DecodeLimits
from schemas.events import ERASED, EventRejected

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


def differences(engine: dict[str, CustomerState], replay: dict[str, CustomerState]) -> dict[str, Any]:
    """Customers whose states differ, in any field (volume and the recent decisions included: volume is decided on
    event time, issue 15), with the differing fields."""
    return state_differences(engine, replay)


@dataclass
class Reference:
    """What `escalera replay` makes of the same lines."""

    states: dict[str, CustomerState]
    decisions: list[DecisionEvent]
    rejected: list[EventRejected]

    @property
    def perk_ids(self) -> set[str]:
        return {d.perk_id for d in self.decisions if d.type == "perk.granted"}  # type: ignore[union-attr]

    @property
    def erasure_notices(self) -> list[dict[str, Any]]:
        """The `customer.erased` notices, as published (the worker sends each to the perks and transitions topics)."""
        return [orjson.loads(flat_json(d)) for d in self.decisions if d.type == ERASED]


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
    """Until the worker's table equals `expected` in every field; else say how not."""
    deadline = time.monotonic() + timeout
    while found := differences(table_states(bootstrap, env), expected):
        if time.monotonic() > deadline:
            shown = dict(list(found.items())[:3])
            raise AssertionError(f"after {timeout:.0f} s, {len(found)} customers still differ from the replay: {shown}")
        time.sleep(1.0)


@dataclass
class Expected:
    """What `escalera replay --as-of` makes of the lines, in their order."""

    states: dict[str, CustomerState]
    perk_ids: set[str]
    transition_ids: set[str]
    late: int
    erasure_ids: set[str] = field(default_factory=set)  # the customer.erased notices, expected on both topics


def replay_as_of(lines: list[bytes], as_of: datetime) -> Expected:
    """The replay's states, perk, transition and erasure notice ids, with its final sweep at `as_of`."""
    decisions: list[DecisionEvent] = []
    replay = Replay(DEFAULT_POLICY, DecodeLimits(currencies=DEFAULT_POLICY.currencies), as_of,
                    decisions.append, lambda _: None)  # fmt: skip
    for line in lines:
        replay.feed(line)
    replay.finish(as_of)
    perks = {d.perk_id for d in decisions if d.type == "perk.granted"}
    transitions = {d.event_id for d in decisions if d.type not in ("perk.granted", ERASED)}
    erased = {d.event_id for d in decisions if d.type == ERASED}
    return Expected(replay.states, perks, transitions, replay.counts.late, erased)


def assert_published_as_replayed(bootstrap: str, settings: Settings, expected: Expected) -> list[dict[str, Any]]:
    """The perks, transitions and erasure notices on the worker's topics are the replay's, by id (one published
    twice under one id, after a restart, is still one): perks on the perks topic, transitions on the transitions
    topic, each notice on both; returns every record read from the two topics."""
    on = {topic: [orjson.loads(value) for _, value in read_all(bootstrap, topic) if value is not None]
          for topic in (settings.topic_perks, settings.topic_transitions)}  # fmt: skip
    decisions = [d for records in on.values() for d in records]
    perks = {d["perk_id"] for d in on[settings.topic_perks] if d["type"] == "perk.granted"}
    assert {d["type"] for d in on[settings.topic_perks]} <= {"perk.granted", ERASED}
    transitions = {d["event_id"] for d in on[settings.topic_transitions] if d["type"] != ERASED}
    assert "perk.granted" not in {d["type"] for d in on[settings.topic_transitions]}
    for topic, records in on.items():
        notices = {d["event_id"] for d in records if d["type"] == ERASED}
        assert notices == expected.erasure_ids, (
            f"{topic}: erasure notices {sorted(notices)}, replay's {expected.erasure_ids}"
        )
    assert perks == expected.perk_ids, (
        f"{len(perks - expected.perk_ids)} perks the replay never grants (e.g. {sorted(perks - expected.perk_ids)[:3]})"
        f", {len(expected.perk_ids - perks)} missing"
    )
    assert transitions == expected.transition_ids, (
        f"{len(transitions - expected.transition_ids)} transitions the replay never makes, "
        f"{len(expected.transition_ids - transitions)} missing"
    )
    return decisions


def metric(worker: WorkerProcess, name: str, **labels: str) -> float:
    """A sample of the worker's /metrics page (0 when absent), summed over the label values not given."""
    status, body = worker.get("/metrics")
    assert status == 200
    total = 0.0
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total
