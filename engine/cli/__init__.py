"""The `escalera` command: every sub-command is registered here, in one place."""

from __future__ import annotations

import sys
from typing import Any

import typer
from typer.core import TyperOption

import engine
from engine.cli import audience, bootstrap, broker, contracts, demo, loyalty, offline, stream
from engine.errors import EscaleraError
from engine.settings import load_settings

_option_type = TyperOption.display_type_rich


def _no_type_for_flags(self: TyperOption, ctx: Any) -> str | None:
    """A flag takes no value, so `--help` shows no type beside it. Typer's Rich help panel labels every option
    with its type, flags and --help included (`<bool>`), where its plain formatter leaves flags bare
    (typer 0.29: rich_utils._print_options_panel vs TyperOption.get_help_record); set here once for all commands."""
    if (self.is_flag or self.count) and self.metavar is None:
        return None
    return _option_type(self, ctx)


TyperOption.display_type_rich = _no_type_for_flags  # type: ignore[method-assign]

app = typer.Typer(
    name="escalera",
    help="Escalera: customers climb a seven-step loyalty ladder, driven by Kafka events.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _show_version(asked: bool) -> None:
    if asked:
        typer.echo(f"escalera {engine.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_show_version, help="Show the version and exit."
    ),
) -> None:
    """Escalera: customers climb a seven-step loyalty ladder, driven by Kafka events."""
    # --version is eager: it answers while parsing, before the settings below are read (even if one is wrong).
    # Every command starts from the same validated settings; a wrong ESCALERA_* value stops it here.
    ctx.obj = load_settings()


# One module per wing the commands drive; registered in the order `escalera --help` lists them (groups come last).
app.command("kafka")(broker.kafka)
app.command("topics")(broker.topics)
contracts.register(app)  # validate; schemas export, schemas docs
app.add_typer(loyalty.policy_app, name="policy")
app.command("simulate")(offline.simulate)
app.command("replay")(offline.replay)
app.command("whatif")(offline.whatif)
app.command("publish")(broker.publish_command)
app.command("bootstrap")(bootstrap.bootstrap)
app.command("worker")(stream.worker_command)
app.command("demo")(demo.demo_command)
app.command("explain")(stream.explain)
app.command("audience")(audience.audience)


def main() -> None:
    """Run the CLI; an EscaleraError ends it with its message and exit code 2, not a traceback."""
    try:
        app()
    except EscaleraError as exc:
        print(f"escalera: {exc}", file=sys.stderr)
        sys.exit(2)
