"""Commands that talk to Kafka: `escalera publish`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from engine.broker.check import check_broker
from engine.broker.publish import publish
from engine.broker.topics import ensure_topics
from engine.offline.lines import read_lines
from engine.settings import Settings


def register(app: typer.Typer) -> None:
    """Add the Kafka commands to the CLI."""
    app.command("publish")(publish_command)
    app.command("worker")(worker_command)
    app.command("demo")(demo_command)


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


def publish_command(
    ctx: typer.Context,
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="JSON-lines file of events."),
    rate: float = typer.Option(0.0, help="Records per second (0: as fast as the broker takes them)."),
    create_topics: bool = typer.Option(True, help="Create missing Escalera topics first."),
) -> None:
    """Publish a JSON-lines event file to the inbound topics, keyed by customer_id."""
    settings: Settings = ctx.obj
    check_broker(settings)  # a wrong password or an untrusted certificate ends here, with a message
    if create_topics:
        ensure_topics(settings)
    err = Console(stderr=True)
    with Progress(
        TextColumn("publishing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err
    ) as progress:
        task = progress.add_task("publish", total=_count_lines(file))
        report = publish(read_lines(file), settings, rate=rate, on_sent=lambda n: progress.advance(task, n))
    per_topic = ", ".join(f"{topic}: {count}" for topic, count in sorted(report.sent.items()))
    typer.echo(
        f"published {report.total} records in {report.seconds:.1f} s ({per_topic}); "
        f"{report.unkeyed} unreadable lines sent unkeyed for the engine to dead-letter"
    )


def worker_command(
    ctx: typer.Context,
    tick: float = typer.Option(1.0, min=0.05, help="Seconds between each owned partition's clock ticks."),
) -> None:
    """Run a streaming worker: consume the inbound topics, climb the ladder, publish perks and transitions.

    Stops cleanly on SIGTERM or Ctrl-C: what was processed is committed, the rest is read again next time.
    """
    from faust.worker import Worker

    from engine.loyalty import load_policy
    from engine.stream.faust_fixes.local_tables import mark_clean_stop, open_local_state
    from engine.stream.logs import logging_config
    from engine.stream.worker import build_worker

    settings: Settings = ctx.obj
    check_broker(settings)  # a wrong password or an untrusted certificate ends here, with a message
    ensure_topics(settings)
    app, _ = build_worker(settings, load_policy(settings.policy_file), tick_seconds=tick)
    worker = Worker(app, loglevel=settings.log_level.lower(), quiet=True, logging_config=logging_config(settings))
    # Faust's terminal spinner sets the root logger to DEBUG (faust/worker.py `_setup_spinner_handler`), so every
    # library's debug message is built and then thrown away: a tenth of the worker's time in the stream benchmark.
    worker.spinner = None
    open_local_state(Path(app.conf.tabledir), settings.data_dir)
    try:
        worker.execute_from_commandline()
    except SystemExit as stop:
        if not stop.code:
            mark_clean_stop(settings.data_dir)
        raise
    mark_clean_stop(settings.data_dir)


def demo_command(
    ctx: typer.Context,
    customers: int = typer.Option(500, min=1, help="Customers to simulate."),
    seed: int = typer.Option(1, help="Simulation seed."),
    rate: float = typer.Option(2000.0, min=1, help="Events published per second."),
    duration: float = typer.Option(0.0, min=0, help="Stop after this many seconds (0: when every event is in)."),
    out: Path = typer.Option(Path("escalera-demo"), file_okay=False, help="Where the outputs go."),
) -> None:
    """Start a local Kafka and a streaming worker, publish a simulated shop, and watch customers climb the ladder."""
    from engine.cli.demo import DemoSpec, run_demo

    spec = DemoSpec(customers=customers, seed=seed, rate=rate, duration=duration, out=out)
    where = run_demo(spec, ctx.obj, lambda text: typer.echo(text, err=True))
    typer.echo(
        f"\noutputs in {where}/: customers.jsonl (the worker's table), perks.jsonl, transitions.jsonl, rejected.jsonl "
        "(its topics), funnel.png, worker.log; `escalera replay events.jsonl --out DIR` gives the same customers "
        "with a summary"
    )
