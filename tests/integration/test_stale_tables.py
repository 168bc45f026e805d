"""Local tables built against a broker that no longer has their changelog (issue 16): discarded with one log line,
rebuilt from what the broker has; never Faust's ConsistencyError, never two brokers' customers in one table.

One worker builds its tables on the session broker and stops cleanly (a module fixture); each test starts a
worker on a copy of that data directory after the broker changed under it: a brand-new broker, or the changelog
topic deleted (the worker's start-up creates it again, empty); the last one runs the check alone on a changelog
that ends before the offsets the tables applied.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka.admin import KafkaAdminClient

from engine.broker.connection import kafka_python_options
from engine.broker.local import running_broker
from engine.broker.topics import TopicSpec, ensure_topics
from engine.offline.simulation import SimulationSpec, simulate
from engine.stream.faust_fixes.local_tables import persisted_offsets
from engine.stream.local_state import ORIGIN, Origin, broker_changelogs, check_local_tables, read_origin, stale_reason
from tests.integration.engine_harness import (
    Reference,
    WorkerProcess,
    differences,
    engine_env,
    metric,
    publish_lines,
    replay_of,
    running_workers,
    settings_of,
    table_states,
    wait_until,
)

PARTITIONS = 2
FIRST = 30  # customers c-0000001 … c-0000030 on the first broker
LATER = 12  # customers on the broker that replaced it (c-0000001 … c-0000012, or d-… after a deleted changelog)


def shop(customers: int, seed: int, prefix: bytes = b"c-") -> tuple[list[bytes], Reference]:
    lines = [line.replace(b"c-00", prefix + b"00") for line in simulate(SimulationSpec(customers, 60, seed))]
    return lines, replay_of(lines)


@pytest.fixture(scope="module")
def built(bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], Path, Reference]:
    """A worker's data directory holding tables built on the session broker, after a clean stop."""
    env = engine_env(bootstrap, PARTITIONS)
    lines, reference = shop(FIRST, seed=1)
    publish_lines(env, lines)
    workdir = tmp_path_factory.mktemp("built")
    with running_workers(env, workdir) as (worker,):
        wait_for(worker, env, reference, 120)
    # What the tests below start from: on the broker they were built on, the tables are kept as they are.
    data = workdir / "worker-1" / "tables"
    settings, changelog = settings_of(env), settings_of(env).changelog_topic
    applied = {changelog: persisted_offsets(data / "v1" / "tables", "customers")}
    assert sorted(applied[changelog]) == list(range(PARTITIONS))
    cluster_id, found = broker_changelogs(settings, [changelog])
    assert stale_reason(read_origin(data), cluster_id, found, applied) is None
    assert read_origin(data) == Origin(cluster_id, {changelog: found[changelog].topic_id})  # type: ignore[union-attr]
    return env, workdir, reference


def wait_for(worker: WorkerProcess, env: dict[str, str], reference: Reference, timeout: float) -> None:
    """Until the table's changelog equals the replay's states and the worker is ready; fail at once if it stops."""

    def done() -> bool:
        assert worker.process.poll() is None, f"the worker stopped by itself: {worker.tail()}"
        found = table_states(env["ESCALERA_BOOTSTRAP_SERVERS"], env)
        return not differences(found, reference.states) and worker.get("/ready")[0] == 200

    wait_until(done, timeout, "the worker's table equals the replay's", interval=0.5)


def copy_of(built: tuple[dict[str, str], Path, Reference], tmp_path: Path) -> Path:
    """A copy of the built worker's directory in `tmp_path` (where `start_worker` finds it); returns its data
    directory."""
    shutil.copytree(built[1] / "worker-1", tmp_path / "worker-1")
    return tmp_path / "worker-1" / "tables"


def log_lines(log: Path) -> list[dict[str, Any]]:
    """The worker's log: each line a JSON object (the default log format), none plain text."""
    return [orjson.loads(line) for line in log.read_text(errors="replace").splitlines() if line.strip()]


def assert_one_discard_line(lines: list[dict[str, Any]], saying: str) -> None:
    found = [line for line in lines if "local tables" in line["message"]]
    assert len(found) == 1, found
    assert saying in found[0]["message"], found[0]
    assert found[0]["level"] == "WARNING" and found[0]["logger"] == "escalera.worker"
    assert lines.index(found[0]) == 0, lines[:3]  # before Faust's own start-up lines, in the same format
    assert not [line for line in lines if "ConsistencyError" in str(line) or "Traceback" in str(line)]


def test_tables_from_a_broker_that_is_gone_are_discarded_and_rebuilt_from_the_new_one(
    built: tuple[dict[str, str], Path, Reference], tmp_path: Path
) -> None:
    copy_of(built, tmp_path)
    with running_broker() as other:
        env = {**built[0], "ESCALERA_BOOTSTRAP_SERVERS": other.bootstrap_servers}  # the same app, topics, data
        lines, reference = shop(LATER, seed=2)
        publish_lines(env, lines)
        with running_workers(env, tmp_path) as (worker,):
            wait_for(worker, env, reference, 120)
            # none of the first broker's customers: the table holds only this broker's (the metric counts the
            # local table; c-0000030 was only ever on the first broker)
            assert metric(worker, "escalera_customers") == len(reference.states)
            assert worker.get(f"/customers/c-{FIRST:07d}")[0] == 404
    assert_one_discard_line(log_lines(worker.log), "were built from another Kafka cluster")


def test_tables_whose_changelog_was_deleted_are_discarded_and_rebuilt(
    built: tuple[dict[str, str], Path, Reference], tmp_path: Path
) -> None:
    env = built[0]
    settings = settings_of(env)
    copy_of(built, tmp_path)
    admin = KafkaAdminClient(**kafka_python_options(settings))
    try:
        admin.delete_topics([settings.changelog_topic])
        wait_until(lambda: settings.changelog_topic not in admin.list_topics(), 30, "the changelog is gone", 0.2)
    finally:
        admin.close()
    lines, reference = shop(LATER, seed=3, prefix=b"d-")  # new customers, after the loss
    publish_lines(env, lines)  # `escalera worker` creates the changelog again, empty, before the check
    with running_workers(env, tmp_path) as (worker,):

        def rebuilt() -> bool:
            assert worker.process.poll() is None, f"the worker stopped by itself: {worker.tail()}"
            return set(table_states(env["ESCALERA_BOOTSTRAP_SERVERS"], env)) == set(reference.states)

        wait_until(rebuilt, 120, "the new customers are in the table", interval=0.5)
        wait_until(lambda: worker.get("/ready")[0] == 200, 30, "the worker is ready", interval=0.5)
        # the customers of before the loss are gone with the changelog: not kept from the local tables
        assert metric(worker, "escalera_customers") == len(reference.states)
        assert worker.get("/customers/c-0000001")[0] == 404
    assert_one_discard_line(log_lines(worker.log), "which was deleted since")


def test_tables_ahead_of_their_changelog_are_discarded_even_without_a_recorded_origin(
    built: tuple[dict[str, str], Path, Reference], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The check alone, in this process: a data directory from before the origin was recorded, and a changelog
    that ends before the offsets its tables applied (here: an empty topic in its place)."""
    data = copy_of(built, tmp_path)
    (data / ORIGIN).unlink()
    settings = settings_of({**built[0], "ESCALERA_DATA_DIR": str(data)})
    empty = f"{settings.app_id}-empty-changelog"
    ensure_topics(settings, [TopicSpec(empty, PARTITIONS, 1)])
    with caplog.at_level("INFO"):
        assert check_local_tables(settings, data / "v1" / "tables", {empty: "customers"}) is True
    said = [record for record in caplog.records if record.name.startswith(("escalera", "kafka"))]
    assert [record.levelname for record in said] == ["WARNING"], said  # and none of kafka-python's chatter
    assert f"changelog {empty} partition 0 up to offset " in said[0].getMessage()
    assert "but that partition ends at offset 0 (and 1 more partition): discarding them" in said[0].getMessage()
    assert not (data / "v1" / "tables").exists() and read_origin(data) is not None
