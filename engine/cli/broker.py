"""Commands of the Kafka client side: `escalera kafka` (a local single-node broker in the foreground),
`escalera topics` (create the topics) and `escalera publish` (an event file onto the inbound topics)."""

from __future__ import annotations

import shlex
import signal
import time
from pathlib import Path
from types import FrameType

import typer
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

from engine.broker.check import check_broker
from engine.broker.local import start_broker
from engine.broker.local.broker import CLIENT_PORT
from engine.broker.local.security import BrokerSecurity, prepare_security
from engine.broker.publish import publish
from engine.broker.topics import ensure_topics, loyalty_topics
from engine.cli.offline import progress_bar
from engine.errors import EscaleraError
from engine.offline.lines import read_lines
from engine.settings import Settings


class _StopRequested(Exception):
    """SIGINT or SIGTERM arrived."""


class TopicsUnavailableError(EscaleraError):
    """The brokers could not be reached, or refused to create or describe the topics."""


def _say(line: str) -> None:
    typer.echo(line, err=True)


def topics(ctx: typer.Context) -> None:
    """Create the Escalera topics that are missing (every one with ESCALERA_TOPIC_PARTITIONS partitions), list them.

    On the brokers of ESCALERA_BOOTSTRAP_SERVERS (default 127.0.0.1:9092, as `escalera kafka`)."""
    from kafka.errors import KafkaError

    settings: Settings = ctx.obj
    check_broker(settings, on_wait=_say)  # no broker: told at once, ended in seconds, naming the variable
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
    port: int = typer.Option(
        CLIENT_PORT,
        help=f"Port for clients on 127.0.0.1 ({CLIENT_PORT}: where every client looks by default; 0: a free port).",
    ),
    data: Path | None = typer.Option(None, help="Data directory kept between runs (default: temporary)."),
    sasl_ssl: Path | None = typer.Option(
        None,
        "--sasl-ssl",
        file_okay=False,
        help="Serve clients SASL_SSL (SCRAM-SHA-512) with a CA, certificate and user made in this directory "
        "(kept: reused next time).",
    ),
) -> None:
    """Run a local Apache Kafka broker (KRaft, single node) until Ctrl-C or SIGTERM.

    On port 9092, clients need no setting; on another, it prints the ESCALERA_BOOTSTRAP_SERVERS line to export."""
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
        elif broker.port != CLIENT_PORT:  # clients default to 127.0.0.1:9092: tell them where it is
            typer.echo(f"export ESCALERA_BOOTSTRAP_SERVERS={broker.bootstrap_servers}")
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


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


def publish_command(
    ctx: typer.Context,
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="JSON-lines file of events."),
    rate: float = typer.Option(0.0, help="Records per second (0: as fast as the broker takes them)."),
    create_topics: bool = typer.Option(True, help="Create missing Escalera topics first."),
) -> None:
    """Publish a JSON-lines event file to the inbound topics, keyed by customer_id.

    To the brokers of ESCALERA_BOOTSTRAP_SERVERS (default 127.0.0.1:9092, as `escalera kafka`)."""
    settings: Settings = ctx.obj
    # No broker, a wrong password or an untrusted certificate ends here, with a message naming the variable.
    check_broker(settings, on_wait=_say)
    if create_topics:
        ensure_topics(settings)
    # A bar on a terminal; nothing in a log or a pipe (the summary line below says it all there).
    with progress_bar(TextColumn("publishing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()) as progress:
        task = progress.add_task("publish", total=_count_lines(file))
        report = publish(read_lines(file), settings, rate=rate, on_sent=lambda n: progress.advance(task, n))
    per_topic = ", ".join(f"{topic}: {count}" for topic, count in sorted(report.sent.items()))
    typer.echo(
        f"published {report.total} records in {report.seconds:.1f} s ({per_topic}); "
        f"{report.unkeyed} unreadable lines sent unkeyed for the engine to dead-letter"
    )
