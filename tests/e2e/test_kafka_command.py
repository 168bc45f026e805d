"""`escalera kafka` as a user runs it: a real broker an outside client uses, stopped cleanly; on the clients'
default port 9092 unless told otherwise, and a busy port refused in one line that leaves nothing behind."""

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

from engine.broker.local import free_port, start_broker
from engine.errors import LocalKafkaError

pytestmark = pytest.mark.e2e

ESCALERA = [sys.executable, "-m", "engine.cli"]


def java_processes_with(marker: str) -> list[int]:
    out = subprocess.run(["ps", "-ww", "-eo", "pid,args"], capture_output=True, text=True, check=True).stdout
    return [int(line.split()[0]) for line in out.splitlines() if "kafka.Kafka" in line and marker in line]


def start_command(tmp_path: Path) -> tuple[subprocess.Popen[str], str]:
    port = free_port()  # not the default 9092, which a developer's own broker may hold
    process = subprocess.Popen(
        [*ESCALERA, "kafka", "--port", str(port), "--data", str(tmp_path / "kafka")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline().strip()  # blocks until ready (or exit)
    if line != f"kafka ready at 127.0.0.1:{port}":
        process.kill()
        raise AssertionError(f"unexpected first line {line!r}; stderr:\n{process.communicate()[1]}")
    # Clients look for 127.0.0.1:9092 by default: on another port, the line that tells them is printed.
    assert process.stdout.readline().strip() == f"export ESCALERA_BOOTSTRAP_SERVERS=127.0.0.1:{port}"
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


def test_the_default_port_is_the_clients_9092_and_busy_it_is_refused_in_one_line_leaving_no_folder(
    tmp_path: Path,
) -> None:
    # 9092 held here, or already held by someone's broker: either way `escalera kafka` must refuse it, since
    # without --port it listens where every client looks by default.
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            busy.bind(("127.0.0.1", 9092))
            busy.listen()
        except OSError:
            pass  # someone listens there already
        temp = tmp_path / "tmp"
        temp.mkdir()
        env = {**os.environ, "TMPDIR": str(temp)}  # where the broker's temporary data folder would be made
        began = time.monotonic()
        result = subprocess.run([*ESCALERA, "kafka"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert time.monotonic() - began < 15
    assert result.stderr.splitlines() == [
        "escalera: port 9092 on 127.0.0.1 is already in use (another broker?): choose another with --port N, "
        "or --port 0 for a free one"
    ]
    assert list(temp.iterdir()) == []  # no empty escalera-kafka-* folder left behind


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
