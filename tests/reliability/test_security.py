"""A SASL_SSL broker (SCRAM-SHA-512, a CA made for the test), started by `escalera kafka --sasl-ssl`: the worker
and `escalera publish` work through it with credentials from the environment; a wrong password, an untrusted
certificate or the wrong protocol ends a command within seconds with a message naming the setting; the password
shows up in no log, output, error or repr.

The session's PLAINTEXT broker is not used here: this module runs a broker of its own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer

from engine.broker.check import (
    BrokerProtocolError,
    BrokerTrustError,
    BrokerUnreachableError,
    check_broker,
)
from engine.broker.connection import faust_credentials, kafka_python_options, security
from engine.broker.local import free_port
from engine.broker.local.security import generate_security
from engine.errors import SettingsError
from engine.offline.simulation import SimulationSpec, simulate
from engine.settings import load_settings
from tests.integration.engine_harness import (
    engine_env,
    replay_of,
    running_workers,
    settings_of,
    wait_for_states,
)

ESCALERA = [sys.executable, "-m", "engine.cli"]
FAIL_FAST_SECONDS = 20.0  # the brief's bound; measured: about a second (most of it Python starting)


@dataclass
class SecuredKafka:
    """`escalera kafka --sasl-ssl DIR` running, and what it printed for clients."""

    process: subprocess.Popen[str]
    bootstrap: str
    exports: dict[str, str]  # what the printed `export` lines set (the password read from its file)
    password: str
    material: Path
    data: Path
    printed: str

    def env(self, **extra: str) -> dict[str, str]:
        """A test's own app id and topics on this broker, with the client variables the command printed."""
        return engine_env(self.bootstrap, 2, **{**self.exports, **extra})

    @property
    def internal_port(self) -> int:
        """The broker's own PLAINTEXT listener (loopback), as the launcher wrote it into server.properties."""
        for line in (self.data / "server.properties").read_text().splitlines():
            if line.startswith("listeners="):
                internal = next(part for part in line.split(",") if part.startswith("INTERNAL://"))
                return int(internal.rsplit(":", 1)[1])
        raise AssertionError("no listeners line")


def exported(lines: list[str]) -> dict[str, str]:
    """Run the printed `export` lines in a shell and read back the variables they set."""
    script = "\n".join(lines) + "\nenv -0"
    out = subprocess.run(
        ["sh", "-c", script], capture_output=True, text=True, check=True, env={"PATH": os.defpath}
    ).stdout
    pairs = (item.split("=", 1) for item in out.split("\0") if item.startswith("ESCALERA_"))
    return {key: value for key, value in pairs}


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredKafka]:
    root = tmp_path_factory.mktemp("secured")
    material, data = root / "tls", root / "kafka"
    process = subprocess.Popen(
        [*ESCALERA, "kafka", "--port", str(free_port()), "--sasl-ssl", str(material), "--data", str(data)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=without_escalera_vars(),
    )  # fmt: skip
    assert process.stdout is not None
    first = process.stdout.readline().strip()  # blocks until ready (or exit)
    if not first.startswith("kafka ready at 127.0.0.1:"):
        process.kill()
        raise AssertionError(f"unexpected first line {first!r}; stderr:\n{process.communicate()[1]}")
    lines = [process.stdout.readline().rstrip("\n") for _ in range(6)]
    password = (material / "sasl-password").read_text()
    broker = SecuredKafka(
        process, first.rsplit(" ", 1)[1], exported(lines), password, material, data, "\n".join([first, *lines])
    )
    try:
        yield broker
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr
        assert password not in stderr


def without_escalera_vars() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ESCALERA_")}


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    seconds: float


def run_cli(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 90) -> Run:
    """One `escalera` command to its end, with only `env`'s ESCALERA_* variables."""
    cwd.mkdir(parents=True, exist_ok=True)
    full = {**without_escalera_vars(), **env, "ESCALERA_DATA_DIR": str(cwd / "tables"),
            "ESCALERA_WEB_PORT": str(free_port())}  # fmt: skip
    began = time.monotonic()
    result = subprocess.run([*ESCALERA, *args], env=full, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    return Run(result.returncode, result.stdout, result.stderr, time.monotonic() - began)


def read_secured(env: dict[str, str], topic: str, quiet: float = 2.0) -> list[tuple[bytes | None, bytes | None]]:
    """Every record of a topic, through the SASL_SSL listener with the env's credentials."""
    consumer = KafkaConsumer(
        topic, auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=int(quiet * 1000),
        **kafka_python_options(settings_of(env)),
    )  # fmt: skip
    records = [(message.key, message.value) for message in consumer]
    consumer.close()
    return records


@pytest.fixture(scope="module")
def events_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[bytes]]:
    lines = list(simulate(SimulationSpec(120, 365, 31, duplicates=0.02, malformed=0.01)))
    path = tmp_path_factory.mktemp("events") / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, lines


def test_the_launcher_prints_what_a_client_needs_but_not_the_password(secured: SecuredKafka) -> None:
    assert secured.exports == {
        "ESCALERA_BOOTSTRAP_SERVERS": secured.bootstrap,
        "ESCALERA_SECURITY_PROTOCOL": "SASL_SSL",
        "ESCALERA_SASL_MECHANISM": "SCRAM-SHA-512",
        "ESCALERA_SASL_USERNAME": "escalera",
        "ESCALERA_SSL_CAFILE": str((secured.material / "ca.pem").resolve()),
        "ESCALERA_SASL_PASSWORD": secured.password,  # read by the printed `$(cat FILE)`
    }
    assert len(secured.password) >= 24
    assert secured.password not in secured.printed
    assert (secured.material / "sasl-password").stat().st_mode & 0o777 == 0o600
    # The broker never saw it in clear: its user was created from a salted hash; its log does not hold it.
    for name in ("server.properties", "broker.log"):
        assert secured.password not in (secured.data / name).read_text(errors="replace"), name
    properties = (secured.data / "server.properties").read_text()
    assert f"advertised.listeners=SASL_SSL://{secured.bootstrap},INTERNAL://127.0.0.1:" in properties
    assert "inter.broker.listener.name=INTERNAL" in properties


def test_publish_and_a_worker_over_sasl_ssl_end_where_the_replay_ends(
    secured: SecuredKafka, events_file: tuple[Path, list[bytes]], tmp_path: Path, report: Callable[..., None]
) -> None:
    path, lines = events_file
    reference = replay_of(lines)
    env = secured.env()
    published = run_cli(["publish", str(path)], env, tmp_path / "publish")
    assert published.code == 0, published.stderr
    assert published.stdout.startswith(f"published {len(lines)} records"), published.stdout
    began = time.monotonic()
    with running_workers(env, tmp_path) as workers:
        wait_for_states(secured.bootstrap, env, reference.states, 180)  # readback, with the credentials
        caught_up = time.monotonic() - began
    perks = read_secured(env, env["ESCALERA_TOPIC_PERKS"])
    assert {orjson.loads(v)["perk_id"] for _, v in perks} == reference.perk_ids  # type: ignore[arg-type]
    letters = read_secured(env, env["ESCALERA_TOPIC_DLQ"])
    assert len({orjson.loads(v)["event_id"] for _, v in letters}) == len(reference.rejected)  # type: ignore[arg-type]
    log = workers[0].log.read_text(errors="replace")
    for where, text in {"worker log": log, "publish stdout": published.stdout,
                        "publish stderr": published.stderr}.items():  # fmt: skip
        assert secured.password not in text, f"the password is in the {where}"
    report(customers=len(reference.states), events=len(lines), caught_up_seconds=round(caught_up, 1))


@pytest.mark.parametrize("command", ["publish", "worker"])
def test_a_wrong_password_ends_the_command_at_once_with_a_message(
    secured: SecuredKafka,
    events_file: tuple[Path, list[bytes]],
    command: str,
    tmp_path: Path,
    report: Callable[..., None],
) -> None:
    args = ["publish", str(events_file[0])] if command == "publish" else ["worker"]
    wrong = "not-" + secured.password[4:]
    run = run_cli(args, secured.env(ESCALERA_SASL_PASSWORD=wrong), tmp_path)
    assert run.code == 2, run.stderr
    assert run.stderr.strip() == (
        f"escalera: authentication failed for user 'escalera' on {secured.bootstrap} (SCRAM-SHA-512): "
        "check ESCALERA_SASL_USERNAME / ESCALERA_SASL_PASSWORD"
    ), run.stderr
    assert run.seconds < FAIL_FAST_SECONDS
    for secret in (secured.password, wrong):
        assert secret not in run.stdout + run.stderr
    report(command=command, failed_in_seconds=round(run.seconds, 2))


@pytest.mark.parametrize("ca", ["another CA", "no CA file"])
@pytest.mark.parametrize("command", ["publish", "worker"])
def test_an_untrusted_certificate_ends_the_command_at_once_with_a_message(
    secured: SecuredKafka,
    events_file: tuple[Path, list[bytes]],
    command: str,
    ca: str,
    tmp_path: Path,
    report: Callable[..., None],
) -> None:
    env = secured.env()
    if ca == "another CA":
        env["ESCALERA_SSL_CAFILE"] = str(
            generate_security(tmp_path / "other").ca_file
        )  # signed nothing of the broker's
        expected = f"ESCALERA_SSL_CAFILE={env['ESCALERA_SSL_CAFILE']}"
    else:
        del env["ESCALERA_SSL_CAFILE"]  # only the system's CAs
        expected = "ESCALERA_SSL_CAFILE is not set, so only the system's CAs are trusted"
    args = ["publish", str(events_file[0])] if command == "publish" else ["worker"]
    run = run_cli(args, env, tmp_path / "run")
    assert run.code == 2, run.stderr
    message = run.stderr.strip()
    assert message.startswith(
        f"escalera: TLS handshake with {secured.bootstrap} failed: certificate not trusted ({expected}): "
    ), message
    assert "Traceback" not in run.stderr and "\n" not in message
    assert run.seconds < FAIL_FAST_SECONDS
    assert secured.password not in run.stdout + run.stderr
    report(command=command, ca=ca, failed_in_seconds=round(run.seconds, 2))


def test_the_wrong_protocol_is_named_not_waited_for(secured: SecuredKafka) -> None:
    # A PLAINTEXT client on the SASL_SSL port; a TLS client, then a SASL client without TLS, on the broker's own
    # PLAINTEXT port.
    internal = f"127.0.0.1:{secured.internal_port}"
    for env, error in [
        (secured.env(ESCALERA_SECURITY_PROTOCOL="PLAINTEXT"), BrokerProtocolError),
        (secured.env(ESCALERA_BOOTSTRAP_SERVERS=internal), BrokerTrustError),
        (
            secured.env(ESCALERA_BOOTSTRAP_SERVERS=internal, ESCALERA_SECURITY_PROTOCOL="SASL_PLAINTEXT"),
            BrokerProtocolError,
        ),
    ]:
        began = time.monotonic()
        with pytest.raises(error, match="ESCALERA_SECURITY_PROTOCOL") as raised:
            check_broker(settings_of(env))
        assert time.monotonic() - began < 5
        assert secured.password not in str(raised.value)


def test_an_unreachable_broker_is_retried_until_the_timeout_then_named() -> None:
    settings = settings_of(engine_env(f"127.0.0.1:{free_port()}"))
    began = time.monotonic()
    with pytest.raises(BrokerUnreachableError, match=r"no Kafka broker answered at 127\.0\.0\.1:\d+ within 2 s"):
        check_broker(settings, timeout=2)
    assert 1.5 < time.monotonic() - began < 5


def test_no_repr_or_setting_error_shows_the_password(secured: SecuredKafka) -> None:
    settings = settings_of(secured.env())
    assert secured.password not in repr(settings) + str(settings)
    assert secured.password not in repr(kafka_python_options(settings).keys())
    assert secured.password not in repr(security(settings))
    assert secured.password not in repr(faust_credentials(settings))  # Faust may log its credentials object
    with pytest.raises(SettingsError) as error:  # another variable wrong: the message lists inputs, never this one
        load_settings({**secured.env(), "ESCALERA_SASL_MECHANISM": "MD5", "ESCALERA_SASL_PASSWORD": secured.password})
    assert secured.password not in str(error.value)
