"""`escalera kafka`: a local single-node Kafka broker in the foreground; `escalera topics`: create the topics."""

from __future__ import annotations

import shlex
import signal
import time
from pathlib import Path
from types import FrameType

import typer

from engine.broker.local import start_broker
from engine.broker.local.security import BrokerSecurity, prepare_security
from engine.broker.topics import ensure_topics, loyalty_topics
from engine.errors import EscaleraError
from engine.settings import Settings


class _StopRequested(Exception):
    """SIGINT or SIGTERM arrived."""


class TopicsUnavailableError(EscaleraError):
    """The brokers could not be reached, or refused to create or describe the topics."""


def register(app: typer.Typer) -> None:
    """Add `escalera kafka` and `escalera topics` to the CLI."""
    app.command("kafka")(kafka)
    app.command("topics")(topics)


def topics(ctx: typer.Context) -> None:
    """Create the Escalera topics that are missing (every one with ESCALERA_TOPIC_PARTITIONS partitions), list them."""
    from kafka.errors import KafkaError

    settings: Settings = ctx.obj
    try:
        created = set(ensure_topics(settings))
    except KafkaError as exc:
        servers = ",".join(settings.bootstrap_servers)
        raise TopicsUnavailableError(f"could not create or check the topics on {servers}: {exc!r}") from None
    for spec in loyalty_topics(settings):
        state = "created" if spec.name in created else "exists"
        typer.echo(f"{spec.name}\tpartitions={spec.partitions}\treplication={spec.replication_factor}\t{state}")


def _client_exports(bootstrap: str, security: BrokerSecurity) -> str:
    """Shell lines that set a client's variables; the password is read from its file, never printed."""
    env = security.client_env(bootstrap)
    del env["ESCALERA_SASL_PASSWORD"]
    lines = [f"export {name}={shlex.quote(value)}" for name, value in env.items()]
    lines.append(f'export ESCALERA_SASL_PASSWORD="$(cat {shlex.quote(str(security.password_file))})"')
    return "\n".join(lines)


def _request_stop(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the clean stop
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise _StopRequested


def kafka(
    port: int = typer.Option(0, help="Port for clients on 127.0.0.1 (0: a free port)."),
    data: Path | None = typer.Option(None, help="Data directory kept between runs (default: temporary)."),
    sasl_ssl: Path | None = typer.Option(
        None,
        "--sasl-ssl",
        file_okay=False,
        help="Serve clients SASL_SSL (SCRAM-SHA-512) with a CA, certificate and user made in this directory "
        "(kept: reused next time).",
    ),
) -> None:
    """Run a local Apache Kafka broker (KRaft, single node) until Ctrl-C or SIGTERM."""
    signal.signal(signal.SIGTERM, _request_stop)
    signal.signal(signal.SIGINT, _request_stop)
    security = prepare_security(sasl_ssl) if sasl_ssl is not None else None
    try:
        broker = start_broker(data_dir=data, port=port or None, security=security)
    except _StopRequested:
        typer.echo("stopped before the broker was ready", err=True)
        raise typer.Exit(130) from None
    try:
        typer.echo(
            f"kafka ready at {broker.bootstrap_servers}",
        )
        if security is not None:
            typer.echo(_client_exports(broker.bootstrap_servers, security))
        typer.echo(f"(started in {broker.started_in_seconds:.1f} s; log: {broker.log_path})", err=True)
        while broker.process.poll() is None:
            time.sleep(0.5)
        typer.echo(f"the broker exited unexpectedly:\n{broker.log_tail()}", err=True)
        raise typer.Exit(1)
    except _StopRequested:
        pass
    finally:
        broker.stop()
    typer.echo("kafka stopped", err=True)
