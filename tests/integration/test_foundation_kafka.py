"""The local broker is a real Kafka: topics, clients, transactions, and Faust tables with changelogs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic

from engine.broker.local import LocalKafka

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def consume_all(bootstrap: str, topic: str, *, expect: int, timeout: float = 30.0, **options: object) -> list:
    """Every record of `topic` from the start, waiting until at least `expect` arrived or `timeout` passed."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=1000,
        **options,
    )
    records: list = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < expect and time.monotonic() < deadline:
            records.extend(consumer)
    finally:
        consumer.close()
    return records


@pytest.fixture
def admin(bootstrap: str) -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(bootstrap_servers=bootstrap)
    yield client
    client.close()


def test_broker_is_kraft_single_node_on_loopback(kafka_broker: LocalKafka, admin: KafkaAdminClient) -> None:
    cluster = admin.describe_cluster()
    assert [(b["host"], b["port"]) for b in cluster["brokers"]] == [("127.0.0.1", kafka_broker.port)]
    assert cluster["controller_id"] == 1
    assert "process.roles=broker,controller" in (kafka_broker.data_dir / "server.properties").read_text()


def test_compacted_topic_is_created_with_its_policy(admin: KafkaAdminClient) -> None:
    topic = unique("compacted")
    admin.create_topics([NewTopic(topic, 3, 1, topic_configs={"cleanup.policy": "compact"})])
    described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    configs = described["topic"][topic]
    assert configs["cleanup.policy"]["value"] == "compact"
    partitions = admin.describe_topics([topic])[0]["partitions"]
    assert len(partitions) == 3


def test_kafka_python_produces_and_consumes_keyed_records(bootstrap: str, admin: KafkaAdminClient) -> None:
    topic = unique("plain")
    admin.create_topics([NewTopic(topic, 2, 1)])
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    sent = {f"c-{i}": f"value-{i}".encode() for i in range(20)}
    for key, value in sent.items():
        producer.send(topic, key=key.encode(), value=value)
    producer.flush()
    producer.close()
    records = consume_all(bootstrap, topic, expect=len(sent))
    assert {r.key.decode(): r.value for r in records} == sent
    # Records with the same key land in the same partition.
    assert len({(r.key, r.partition) for r in records}) == len(sent)


def test_transactional_producer_commits_and_aborts(bootstrap: str, admin: KafkaAdminClient) -> None:
    topic = unique("txn")
    admin.create_topics([NewTopic(topic, 1, 1)])
    producer = KafkaProducer(bootstrap_servers=bootstrap, transactional_id=unique("tx"))
    producer.init_transactions()
    producer.begin_transaction()
    producer.send(topic, value=b"committed-1")
    producer.send(topic, value=b"committed-2")
    producer.commit_transaction()
    producer.begin_transaction()
    producer.send(topic, value=b"aborted")
    producer.flush()
    producer.abort_transaction()
    producer.close()
    committed = consume_all(bootstrap, topic, expect=2, timeout=10, isolation_level="read_committed")
    assert [r.value for r in committed] == [b"committed-1", b"committed-2"]
    everything = consume_all(bootstrap, topic, expect=3, timeout=10, isolation_level="read_uncommitted")
    assert b"aborted" in [r.value for r in everything]


class FaustProbe:
    """Runs tests/integration/faust_probe.py as a real Faust worker process."""

    def __init__(self, bootstrap: str, app_id: str, workdir: Path) -> None:
        self.bootstrap, self.app_id, self.workdir = bootstrap, app_id, workdir
        self.source, self.output = f"{app_id}-in", f"{app_id}-counts"
        self.process: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        env = {
            **os.environ,
            "PROBE_BROKER": self.bootstrap,
            "PROBE_APP": self.app_id,
            "PROBE_IN": self.source,
            "PROBE_OUT": self.output,
        }
        log = open(self.workdir / f"worker-{self.runs}.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.faust_probe", "--datadir", str(self.workdir / "data"),
             "worker", "-l", "info"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Until Faust says the worker is ready (partitions assigned, tables restored, streams sought): a record sent
        while it is still starting may be fetched before Faust seeks to the committed offsets and then dropped
        (RELIABILITY.md, finding 7), which made this test fail now and then on a busy broker."""
        deadline = time.monotonic() + timeout
        while "Worker ready" not in self.log_tail():
            assert self.process is not None and self.process.poll() is None, self.log_tail()
            if time.monotonic() > deadline:
                raise AssertionError(f"the Faust worker was not ready within {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.5)

    def stop(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"the Faust worker did not stop on SIGTERM:\n{self.log_tail()}") from None

    def log_tail(self) -> str:
        return (self.workdir / f"worker-{self.runs}.log").read_text(errors="replace")[-4000:]


def test_faust_app_consumes_writes_a_table_and_restores_it_from_the_changelog(
    bootstrap: str, admin: KafkaAdminClient, tmp_path: Path
) -> None:
    app_id = unique("probe")
    probe = FaustProbe(bootstrap, app_id, tmp_path)
    # The broker does not auto-create topics: like a production cluster, topics are made on purpose.
    admin.create_topics([NewTopic(probe.source, 2, 1), NewTopic(probe.output, 2, 1)])
    producer = KafkaProducer(bootstrap_servers=bootstrap)

    probe.start()
    try:
        probe.wait_ready()
        for _ in range(3):
            producer.send(probe.source, key=b"alice", value=b"x")
        producer.send(probe.source, key=b"bob", value=b"x")
        producer.flush()
        first = consume_all(bootstrap, probe.output, expect=4, timeout=90)
    finally:
        probe.stop()
    counts = [json.loads(r.value) for r in first]
    assert max(c["count"] for c in counts if c["key"] == "alice") == 3, probe.log_tail()
    assert max(c["count"] for c in counts if c["key"] == "bob") == 1

    changelog = f"{app_id}-counts-changelog"
    assert changelog in admin.list_topics()
    described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, changelog)])
    assert described["topic"][changelog]["cleanup.policy"]["value"] == "compact"
    writes = consume_all(bootstrap, changelog, expect=4, timeout=20)
    latest = {json.loads(r.key): json.loads(r.value) for r in writes}
    assert latest == {"alice": 3, "bob": 1}

    # Second start: the in-memory table is empty until restored from the changelog, so the next
    # record for alice counts 4 only if the restore happened.
    probe.start()
    try:
        probe.wait_ready()
        producer.send(probe.source, key=b"alice", value=b"x")
        producer.flush()
        second = consume_all(bootstrap, probe.output, expect=5, timeout=90)
    finally:
        probe.stop()
        producer.close()
    alice = [json.loads(r.value)["count"] for r in second if r.key == b"alice"]
    after_restart = alice[3:]
    diagnostics = f"alice counts {alice}\n{probe.log_tail()}"
    # Restored from the changelog: counting goes on from 3. Without the restore it would start again at 1.
    assert after_restart and after_restart[0] == 4, diagnostics
    # At-least-once: Faust may redeliver the last record of the first run (faust-streaming #48),
    # so the new record counts 4 or 5, never more.
    assert after_restart in ([4], [4, 5]), diagnostics
