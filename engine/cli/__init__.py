"""The `escalera` command: every sub-command is registered here, in one place."""

from __future__ import annotations

import sys

import typer

from engine.cli import broker, contracts, demo, loyalty, offline, stream
from engine.errors import EscaleraError
from engine.settings import load_settings

app = typer.Typer(
    name="escalera",
    help="Escalera: customers climb a seven-step loyalty ladder, driven by Kafka events.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(ctx: typer.Context) -> None:
    """Escalera: customers climb a seven-step loyalty ladder, driven by Kafka events."""
    # Every command starts from the same validated settings; a wrong ESCALERA_* value stops it here.
    ctx.obj = load_settings()


# One module per wing the commands drive; registered in the order `escalera --help` lists them (groups come last).
app.command("kafka")(broker.kafka)
app.command("topics")(broker.topics)
contracts.register(app)  # validate; schemas export, schemas docs
app.add_typer(loyalty.policy_app, name="policy")
app.command("simulate")(offline.simulate)
app.command("replay")(offline.replay)
app.command("publish")(broker.publish_command)
app.command("worker")(stream.worker_command)
app.command("demo")(demo.demo_command)
app.command("explain")(stream.explain)


def main() -> None:
    """Run the CLI; an EscaleraError ends it with its message and exit code 2, not a traceback."""
    try:
        app()
    except EscaleraError as exc:
        print(f"escalera: {exc}", file=sys.stderr)
        sys.exit(2)
