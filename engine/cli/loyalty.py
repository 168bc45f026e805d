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
    rules: bool = typer.Option(False, "--rules", help="Only the perk rules, one line each, and the version."),
) -> None:
    """Print the effective policy as YAML, with its version and its perk rules in words (ready to save and edit)."""
    settings: Settings = ctx.obj
    effective = load_policy(policy or settings.policy_file)
    if rules:
        lines = "".join(f"  {line}\n" for line in effective.describe_perk_rules())
        typer.echo(f"Perk rules of the loyalty policy, version {effective.version}:\n{lines}", nl=False)
        return
    typer.echo(effective.to_yaml(), nl=False)
