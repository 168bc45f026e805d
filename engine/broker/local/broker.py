"""Run a single-node KRaft Apache Kafka broker on 127.0.0.1 as a child process of this Python process."""

from __future__ import annotations

import base64
import contextlib
import ctypes
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any

from engine.broker.local.jars import broker_jars, deploy_dir, require_java
from engine.broker.local.security import BrokerSecurity
from engine.errors import LocalKafkaError
from engine.settings import Settings

READY_TIMEOUT_SECONDS = 90.0
# The port of the clients' default bootstrap server (127.0.0.1:9092): `escalera kafka` listens there by default.
CLIENT_PORT = int(Settings.model_fields["bootstrap_servers"].default[0].rpartition(":")[2])
HEAP = "512m"
_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class LocalKafka:
    """A running local broker: where to reach it, where its data and log are, and how to stop it."""

    port: int
    controller_port: int
    data_dir: Path
    process: subprocess.Popen[bytes]
    owns_data_dir: bool
    started_in_seconds: float = 0.0
    _log_file: object = field(default=None, repr=False)
    # SASL_SSL on `port` when set (the broker's own listeners then stay PLAINTEXT on loopback: `internal_port`).
    security: BrokerSecurity | None = None
    internal_port: int | None = None

    def client_options(self) -> dict[str, Any]:
        """kafka-python options to reach this broker's client port (credentials included when secured)."""
        options: dict[str, Any] = {"bootstrap_servers": self.bootstrap_servers}
        if self.security is not None:
            options.update(
                security_protocol="SASL_SSL",
                sasl_mechanism=self.security.mechanism,
                sasl_plain_username=self.security.username,
                sasl_plain_password=self.security.password.get_secret_value(),
                ssl_cafile=str(self.security.ca_file),
            )
        return options

    @property
    def bootstrap_servers(self) -> str:
        """The `host:port` clients connect to."""
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        """The broker's log (its stderr)."""
        return self.data_dir / "broker.log"

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the broker log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no broker log)"

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the broker: SIGTERM for a clean shutdown, SIGKILL if it does not exit in time."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self._log_file is not None:
            self._log_file.close()  # type: ignore[attr-defined]
            self._log_file = None
        if self.owns_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def start_broker(
    data_dir: Path | None = None,
    port: int | None = None,
    controller_port: int | None = None,
    ready_timeout: float = READY_TIMEOUT_SECONDS,
    security: BrokerSecurity | None = None,
) -> LocalKafka:
    """Fetch (once), format (once per data dir) and start a broker; return once it answers metadata.

    With `security` the client port speaks SASL_SSL (SCRAM, the certificate in `security`); the user is created
    when the data directory is formatted, so a kept data directory must be used with the same `security`.
    """
    began = time.monotonic()
    java = require_java()
    jars = broker_jars()
    # Before any folder is made: a refused port leaves nothing behind.
    if port and _port_open(port):
        raise LocalKafkaError(
            f"port {port} on 127.0.0.1 is already in use (another broker?): choose another with --port N, "
            "or --port 0 for a free one"
        )
    if controller_port and _port_open(controller_port):
        raise LocalKafkaError(f"controller port {controller_port} on 127.0.0.1 is already in use: choose another")
    owns = data_dir is None
    root = Path(tempfile.mkdtemp(prefix="escalera-kafka-")) if data_dir is None else data_dir.resolve()
    root.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    controller_port = controller_port or free_port()
    internal_port = free_port() if security is not None else None
    classpath = f"{jars}/*"
    try:
        properties = _write_properties(root, port, controller_port, security, internal_port)
        if not (root / "logs" / "meta.properties").is_file():
            _format(java, classpath, properties, security)
    except BaseException:
        if owns:
            shutil.rmtree(root, ignore_errors=True)
        raise
    log_file = open(root / "broker.log", "ab")  # noqa: SIM115 - closed by LocalKafka.stop
    command = [
        java, f"-Xmx{HEAP}", f"-Xms{HEAP}", "-XX:+UseG1GC", "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={deploy_dir() / 'log4j2.yaml'}",
        "-cp", classpath, "kafka.Kafka", str(properties),
    ]  # fmt: skip
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file, preexec_fn=_die_with_parent
    )
    broker = LocalKafka(
        port, controller_port, root, process, owns, _log_file=log_file, security=security, internal_port=internal_port
    )
    try:
        _wait_until_ready(broker, ready_timeout)
    except BaseException:
        broker.stop(timeout=10)
        raise
    broker.started_in_seconds = time.monotonic() - began
    return broker


@contextlib.contextmanager
def running_broker(
    data_dir: Path | None = None, port: int | None = None, security: BrokerSecurity | None = None
) -> Iterator[LocalKafka]:
    """A broker for the duration of a `with` block; it is stopped whatever happens inside."""
    broker = start_broker(data_dir=data_dir, port=port, security=security)
    try:
        yield broker
    finally:
        broker.stop()


def _write_properties(
    root: Path,
    port: int,
    controller_port: int,
    security: BrokerSecurity | None = None,
    internal_port: int | None = None,
) -> Path:
    template = Template((deploy_dir() / "server.properties").read_text())
    if security is None:
        listeners = f"PLAINTEXT://127.0.0.1:{port}"
        protocol_map, inter_broker, extra = "PLAINTEXT:PLAINTEXT", "PLAINTEXT", ""
    else:
        # Clients get SASL_SSL; the broker talks to itself over PLAINTEXT on loopback (its own port, so it needs
        # no SCRAM user of its own). Clients only ever see the listener they connected to in metadata.
        listeners = f"SASL_SSL://127.0.0.1:{port},INTERNAL://127.0.0.1:{internal_port}"
        protocol_map, inter_broker = "SASL_SSL:SASL_SSL,INTERNAL:PLAINTEXT", "INTERNAL"
        extra = _security_properties(security)
    text = template.substitute(
        controller_port=controller_port,
        listeners=listeners,
        advertised_listeners=listeners,
        protocol_map=protocol_map,
        inter_broker_listener=inter_broker,
        log_dirs=str(root / "logs"),
        security=extra,
    )
    path = root / "server.properties"
    path.write_text(text)
    return path


def _security_properties(security: BrokerSecurity) -> str:
    """The SASL_SSL listener's settings: SCRAM (credentials live in the cluster metadata) over TLS (PEM files)."""
    mechanism = security.mechanism.lower()
    lines = [
        f"sasl.enabled.mechanisms={security.mechanism}",
        f"listener.name.sasl_ssl.sasl.enabled.mechanisms={security.mechanism}",
        # The broker only verifies clients here (no inter-broker SASL), so its JAAS entry names no user.
        f"listener.name.sasl_ssl.{mechanism}.sasl.jaas.config="
        "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        "listener.name.sasl_ssl.ssl.keystore.type=PEM",
        f"listener.name.sasl_ssl.ssl.keystore.location={security.keystore_file}",
        "listener.name.sasl_ssl.ssl.client.auth=none",
    ]
    return "\n".join(["", "# SASL_SSL for clients (engine/broker/local/security.py made the files).", *lines, ""])


def _scram_argument(security: BrokerSecurity, iterations: int = 4096) -> str:
    """The storage tool's --add-scram value, with the salted password only: the clear one never is an argument."""
    salt = os.urandom(24)
    name = {"SCRAM-SHA-512": "sha512", "SCRAM-SHA-256": "sha256"}[security.mechanism]
    salted = hashlib.pbkdf2_hmac(name, security.password.get_secret_value().encode(), salt, iterations)
    encode = base64.b64encode
    return (
        f'{security.mechanism}=[name={security.username},salt="{encode(salt).decode()}",'
        f'saltedpassword="{encode(salted).decode()}",iterations={iterations}]'
    )


def new_cluster_id() -> str:
    """A cluster id as Kafka's `random-uuid` makes it: 16 random bytes, URL-safe base64, no '-' first."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _format(java: str, classpath: str, properties: Path, security: BrokerSecurity | None = None) -> None:
    def tool(*args: str) -> str:
        result = subprocess.run(
            [java, "-cp", classpath, "kafka.tools.StorageTool", *args],
            capture_output=True, text=True, check=False, timeout=120,
        )  # fmt: skip
        if result.returncode != 0:
            output = "\n".join((result.stdout + result.stderr).strip().splitlines()[-20:])
            raise LocalKafkaError(f"formatting the broker's storage failed ({' '.join(args[:1])}):\n{output}")
        return result.stdout

    scram = ["--add-scram", _scram_argument(security)] if security is not None else []
    tool("format", "--standalone", "-t", new_cluster_id(), "-c", str(properties), *scram)


def _wait_until_ready(broker: LocalKafka, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        code = broker.process.poll()
        if code is not None:
            raise LocalKafkaError(
                f"the Kafka broker exited with code {code} before it was ready; "
                f"log tail ({broker.log_path}):\n{broker.log_tail()}"
            )
        # A closed port is polled cheaply: kafka-python's client backs off for seconds between retries.
        if _port_open(broker.port) and _metadata_answers(broker.client_options()):
            return
        if time.monotonic() > deadline:
            raise LocalKafkaError(
                f"the Kafka broker did not answer a metadata request within {timeout:.0f} s; "
                f"log tail ({broker.log_path}):\n{broker.log_tail()}"
            )
        time.sleep(0.1)


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _metadata_answers(options: dict[str, Any]) -> bool:
    """True when the broker answers a metadata request (not merely accepts a TCP connection)."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaConfigurationError, KafkaError

    try:
        admin = KafkaAdminClient(request_timeout_ms=3000, **options)
    except KafkaConfigurationError:
        raise
    except (KafkaError, OSError, ValueError):
        return False
    try:
        admin.describe_cluster()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


def _die_with_parent() -> None:
    """In the child before exec: ask Linux to SIGKILL the JVM if this Python process dies, even by SIGKILL."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    os.setpgrp()  # Ctrl-C in a terminal goes to Python, which then stops the broker cleanly
