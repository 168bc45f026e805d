"""Commands of the offline wing (file in, files out): `escalera simulate`, `escalera replay`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from engine.errors import EscaleraError
from engine.loyalty import load_policy
from engine.offline.simulation import DEFAULT_END, SimulationSpec, write
from engine.settings import Settings


def _timestamp(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise EscaleraError(f"{text!r} is not an RFC 3339 timestamp") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def simulate(
    customers: int = typer.Option(1000, min=1, help="Customers to simulate (referred friends come on top)."),
    days: int = typer.Option(365, min=1, help="Days of history."),
    seed: int = typer.Option(1, help="Random seed: the same seed gives the same file."),
    out: Path = typer.Option(..., dir_okay=False, help="Where to write the JSON lines."),
    duplicates: float = typer.Option(0.0, min=0, max=1, help="Fraction of lines repeated a little later."),
    malformed: float = typer.Option(0.0, min=0, max=1, help="Fraction of broken lines mixed in."),
    end: str = typer.Option(DEFAULT_END.isoformat(), help="End of the simulated period (RFC 3339)."),
) -> None:
    """Write a realistic, deterministic synthetic population as JSON lines of inbound events."""
    spec = SimulationSpec(customers, days, seed, _timestamp(end), duplicates, malformed)
    lines = write(spec, out)
    typer.echo(f"wrote {lines} lines to {out}")


def replay(
    ctx: typer.Context,
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="JSON-lines event file."),
    out: Path = typer.Option(..., file_okay=False, help="Directory for the outputs."),
    policy: Path | None = typer.Option(
        None, exists=True, dir_okay=False, help="Policy file (default: ESCALERA_POLICY_FILE)."
    ),
    as_of: str | None = typer.Option(None, help="Final sweep time (default: the latest occurred_at in the file)."),
) -> None:
    """Run the loyalty core over an event file in file order, with event time as the clock."""
    from engine.offline.outputs import replay_file

    settings: Settings = ctx.obj
    effective = load_policy(policy or settings.policy_file)
    limits = settings.decode_limits(effective.currencies)
    moment = None if as_of is None else _timestamp(as_of)
    with Progress(
        TextColumn("replaying"), BarColumn(), DownloadColumn(), TimeRemainingColumn(), console=Console(stderr=True)
    ) as progress:
        task = progress.add_task("replay", total=file.stat().st_size)
        report = replay_file(
            file, out, effective, limits, datetime.now(UTC), moment, lambda n: progress.advance(task, n)
        )
    steps = ", ".join(f"{step} {count}" for step, count in report["steps"].items())
    typer.echo(
        f"{report['customers']} customers ({steps}); {sum(report['perks_granted'].values())} perks granted, "
        f"{sum(report['rejections'].values())} lines rejected; outputs in {out}"
    )
