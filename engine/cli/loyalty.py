"""Commands of the loyalty core: `escalera policy show`."""

from __future__ import annotations

from pathlib import Path

import typer

from engine.loyalty import load_policy
from engine.settings import Settings

policy_app = typer.Typer(help="The loyalty policy (every number of the rules).", no_args_is_help=True)


@policy_app.command("show")
def policy_show(
    ctx: typer.Context,
    policy: Path | None = typer.Option(
        None, exists=True, dir_okay=False, help="Policy file (default: ESCALERA_POLICY_FILE)."
    ),
) -> None:
    """Print the effective policy as YAML, with its version."""
    settings: Settings = ctx.obj
    typer.echo(load_policy(policy or settings.policy_file).to_yaml(), nl=False)
