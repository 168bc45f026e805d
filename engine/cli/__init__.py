"""The `escalera` command: every sub-command is registered here, in one place."""

from __future__ import annotations

import sys

import typer

from engine.cli import broker, contracts, core, explain, stream
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


for module in (broker, contracts, core, stream, explain):
    module.register(app)


def main() -> None:
    """Run the CLI; an EscaleraError ends it with its message and exit code 2, not a traceback."""
    try:
        app()
    except EscaleraError as exc:
        print(f"escalera: {exc}", file=sys.stderr)
        sys.exit(2)
