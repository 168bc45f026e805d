"""`escalera kafka` as a user runs it: a real broker an outside client uses, stopped cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from engine.broker.local import start_broker
from engine.errors import LocalKafkaError

pytestmark = pytest.mark.e2e

ESCALERA = [sys.executable, "-m", "engine.cli"]


def java_processes_with(marker: str) -> list[int]:
    out = subprocess.run(["ps", "-ww", "-eo", "pid,args"], capture_output=True, text=True, check=True).stdout
    return [int(line.split()[0]) for line in out.splitlines() if "kafka.Kafka" in line and marker in line]


def start_command(tmp_path: Path) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [*ESCALERA, "kafka", "--data", str(tmp_path / "kafka")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline().strip()  # blocks until ready (or exit)
    if not line.startswith("kafka ready at 127.0.0.1:"):
        process.kill()
        raise AssertionError(f"unexpected first line {line!r}; stderr:\n{process.communicate()[1]}")
    return process, line.rsplit(" ", 1)[1]


def test_escalera_kafka_serves_an_outside_client_and_stops_on_sigterm(tmp_path: Path) -> None:
    process, bootstrap = start_command(tmp_path)
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        admin.create_topics([NewTopic("outside", 1, 1)])
        admin.close()
        producer = KafkaProducer(bootstrap_servers=bootstrap)
        for i in range(5):
            producer.send("outside", key=b"k", value=f"v{i}".encode())
        producer.flush()
        producer.close()
        consumer = KafkaConsumer(
            "outside", bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=5000
        )
        assert [m.value for m in consumer] == [f"v{i}".encode() for i in range(5)]
        consumer.close()
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "kafka stopped" in stderr
    assert java_processes_with(str(tmp_path)) == []


def test_the_broker_dies_with_a_killed_parent(tmp_path: Path) -> None:
    process, _ = start_command(tmp_path)
    if not java_processes_with(str(tmp_path)):
        process.terminate()
        raise AssertionError("the broker JVM should be running")
    process.send_signal(signal.SIGKILL)  # no chance to clean up: the kernel must take the JVM down
    process.wait(10)
    deadline = time.monotonic() + 20
    while java_processes_with(str(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert java_processes_with(str(tmp_path)) == []


def test_a_busy_port_is_refused_before_the_jvm_starts(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(LocalKafkaError, match=f"port {port} on 127.0.0.1 is already in use"):
            start_broker(data_dir=tmp_path / "kafka", port=port)


def test_a_broker_that_cannot_start_fails_fast_with_its_log(tmp_path: Path) -> None:
    # Data formatted for another node: the JVM starts, refuses the data directory and exits.
    logs = tmp_path / "kafka" / "logs"
    logs.mkdir(parents=True)
    (logs / "meta.properties").write_text("version=1\nnode.id=7\ncluster.id=someone-elses\n")
    began = time.monotonic()
    with pytest.raises(LocalKafkaError) as error:
        start_broker(data_dir=tmp_path / "kafka", ready_timeout=60)
    assert time.monotonic() - began < 30
    message = str(error.value)
    assert "exited with code" in message
    assert "doesn't match previous node id" in message  # the tail of the broker's own log
    assert os.path.exists(tmp_path / "kafka" / "broker.log")
