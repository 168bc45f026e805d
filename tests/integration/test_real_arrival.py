"""Events the way shops send them, to a worker on its default settings (the wall clock on): a history published at
a steady rate while the worker runs must end where `escalera replay --as-of <now>` ends, with the same perks —
never a perk for a day the history had not reached yet."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from kafka import KafkaProducer

from engine.broker.connection import kafka_python_options
from engine.broker.publish import publish, route
from engine.broker.topics import ensure_topics
from engine.loyalty import DEFAULT_POLICY, CustomerState, DecisionEvent
from engine.offline.replay import Replay
from engine.offline.simulation import SimulationSpec, simulate
from engine.settings import Settings
from schemas.decoder import DecodeLimits
from tests.integration.engine_harness import (
    WorkerProcess,
    engine_env,
    read_all,
    running_workers,
    settings_of,
    wait_for_states,
    wait_until,
)

GRACE_OVERRIDE = {k: v for k, v in os.environ.items() if k == "ESCALERA_ARRIVAL_GRACE_SECONDS"}  # to try others


def replay_as_of(lines: list[bytes], as_of: datetime) -> tuple[dict[str, CustomerState], set[str]]:
    """The replay's states and perk ids, with its final sweep at `as_of`."""
    decisions: list[DecisionEvent] = []
    replay = Replay(DEFAULT_POLICY, DecodeLimits(currencies=DEFAULT_POLICY.currencies), as_of,
                    decisions.append, lambda _: None)  # fmt: skip
    for line in lines:
        replay.feed(line)
    replay.finish(as_of)
    return replay.states, {d.perk_id for d in decisions if d.type == "perk.granted"}  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("rate", "customers", "ended_days_ago"),
    [
        (20, 60, 0),  # a trickle of a history that ends now
        (100, 150, 75),  # a history that stopped months ago: once it is in, the worker's clock reaches today
        (1000, 150, 0),  # fast
    ],
)
def test_a_history_published_at_a_steady_rate_to_a_default_worker_ends_where_the_replay_as_of_now_ends(
    bootstrap: str, tmp_path: Path, rate: int, customers: int, ended_days_ago: int
) -> None:
    env = engine_env(bootstrap)
    del env["ESCALERA_WALL_CLOCK_WHEN_IDLE"]  # the default: an idle shop follows the wall clock
    settings = settings_of(env)
    assert settings.wall_clock_when_idle
    ended = datetime.now(UTC).replace(microsecond=0) - timedelta(days=ended_days_ago, minutes=1)
    lines = list(simulate(SimulationSpec(customers=customers, days=365, seed=11, end=ended, duplicates=0.01)))
    ensure_topics(settings)
    with running_workers(env, tmp_path) as workers:
        # what a shop going live does: the worker runs (and has read its empty topics), then the history is
        # published at a steady rate
        wait_until(lambda: _ready(workers[0]), 60, "the worker is ready")
        time.sleep(2)
        report = publish(iter(lines), settings, rate=rate)
        assert report.failed == 0
        # once everything is read, the worker's clock reaches today: it must equal the replay as of now
        states, perk_ids = replay_as_of(lines, datetime.now(UTC))
        wait_for_states(bootstrap, env, states, timeout=150)
        granted = {record[1] for record in read_all(bootstrap, settings.topic_perks) if record[1] is not None}
        assert workers[0].process.poll() is None, workers[0].tail()
    published = {_perk_id(value) for value in granted}
    assert published == perk_ids, (
        f"{len(published - perk_ids)} perks the replay never grants (e.g. {sorted(published - perk_ids)[:3]}), "
        f"{len(perk_ids - published)} missing"
    )


def _perk_id(value: bytes) -> str:
    perk_id: str = orjson.loads(value)["perk_id"]
    return perk_id


def _ready(worker: WorkerProcess) -> bool:
    try:
        return worker.get("/ready")[0] == 200
    except OSError:  # not listening yet
        return False


def publish_with_delays(settings: Settings, lines: list[bytes], rate: float, delay: Callable[[str], float]) -> None:
    """Publish `lines` at a steady rate, each line `delay(topic)` seconds after its turn (a topic that lags)."""
    producer = KafkaProducer(acks="all", linger_ms=5, **kafka_python_options(settings))
    began = time.monotonic()
    plan = sorted(
        (index / rate + delay((where := route(line, settings)).topic), index, where, line)
        for index, line in enumerate(lines)
    )
    for at_second, _, where, line in plan:
        ahead = began + at_second - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
        producer.send(where.topic, key=where.key, value=line)
    producer.flush()
    producer.close()


def test_a_topic_published_half_a_second_behind_the_others_is_applied_in_event_time_order(
    bootstrap: str, tmp_path: Path
) -> None:
    env = engine_env(bootstrap)
    del env["ESCALERA_WALL_CLOCK_WHEN_IDLE"]  # default settings: the wall clock on, an arrival grace of 1 s
    env.update(GRACE_OVERRIDE)
    settings = settings_of(env)
    ended = datetime.now(UTC).replace(microsecond=0) - timedelta(days=40)
    lines = list(simulate(SimulationSpec(customers=150, days=365, seed=12, end=ended)))
    ensure_topics(settings)
    with running_workers(env, tmp_path) as workers:
        wait_until(lambda: _ready(workers[0]), 60, "the worker is ready")
        # registrations and other customer events reach Kafka half a second after the purchases and feedback
        # that follow them in event time (a shop whose customer service publishes through a slower path)
        publish_with_delays(settings, lines, 100, lambda topic: 0.5 if topic == settings.topic_customers else 0.0)
        states, perk_ids = replay_as_of(lines, datetime.now(UTC))
        wait_for_states(bootstrap, env, states, timeout=150)
        granted = {value for _, value in read_all(bootstrap, settings.topic_perks) if value is not None}
    assert {_perk_id(value) for value in granted} == perk_ids
