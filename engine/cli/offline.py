"""Commands of the offline wing (file in, files out): `escalera simulate`, `escalera replay`, `escalera whatif`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from engine.errors import EscaleraError
from engine.loyalty import load_policy
from engine.offline.simulation import DEFAULT_END, SimulationSpec, write
from engine.settings import Settings


def parse_timestamp(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise EscaleraError(f"{text!r} is not an RFC 3339 timestamp") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@contextmanager
def file_errors(doing: str, path: Path) -> Iterator[None]:
    """An OSError while handling `path` (a file where a folder should be, no permission, a read-only or full disk)
    ends the command with one line, "cannot <doing> <path>: <what is wrong>", not a traceback. An error that names
    another file, or a connection's (a closed pipe on stdout), is not about `path`: it stays an error to see whole."""
    try:
        yield
    except OSError as error:
        failed = Path(error.filename) if isinstance(error.filename, str) else path
        if isinstance(error, ConnectionError) or not (
            failed == path or path in failed.parents or failed in path.parents
        ):
            raise
        raise EscaleraError(f"cannot {doing} {path}: {_what_is_wrong(error, failed)}") from None


def _what_is_wrong(error: OSError, failed: Path) -> str:
    """The file that stands where a folder is needed, if that is it; else the system's words."""
    on_the_way = [failed, *failed.parents] if isinstance(error, FileExistsError) else list(failed.parents)
    for folder in on_the_way:
        if folder.exists():
            if not folder.is_dir():
                return f"{folder} is a file, not a directory"
            break
    said = error.strerror or type(error).__name__
    return said[:1].lower() + said[1:]


@contextmanager
def reading_progress(label: str, file: Path) -> Iterator[Callable[[int], None]]:
    """A progress bar over a file's bytes (`progress_bar`); yields what to call with the bytes each line took."""
    with progress_bar(TextColumn(label), BarColumn(), DownloadColumn(), TimeRemainingColumn()) as bar:
        task = bar.add_task(label, total=file.stat().st_size)
        yield lambda n: bar.advance(task, n)


def progress_bar(*columns: str | ProgressColumn) -> Progress:
    """A progress bar on standard error when it is a terminal; nothing at all when it is not (a log, a pipe)."""
    console = Console(stderr=True)
    return Progress(*columns, console=console, disable=not console.is_interactive)


_STAGES = {"customers": "simulating customers", "events": "writing events"}  # simulation.Progress's stages


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
    spec = SimulationSpec(customers, days, seed, parse_timestamp(end), duplicates, malformed)
    stages: dict[str, TaskID] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with file_errors("write --out", out), progress_bar(*columns) as progress:

        def advance(stage: str, done: int, total: int) -> None:
            if stage not in stages:
                stages[stage] = progress.add_task(_STAGES.get(stage, stage), total=total)
            progress.update(stages[stage], completed=done)

        out.parent.mkdir(parents=True, exist_ok=True)  # as replay's --out and `schemas docs` do
        lines = write(spec, out, on_progress=advance)
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
    moment = None if as_of is None else parse_timestamp(as_of)
    with file_errors("write --out", out):
        out.mkdir(parents=True, exist_ok=True)  # before the replay: a wrong --out is told at once
        with reading_progress("replaying", file) as advance:
            report = replay_file(
                file, out, effective, limits, datetime.now(UTC), moment, advance, settings.topic_partitions
            )
    steps = ", ".join(f"{step} {count}" for step, count in report["steps"].items())
    typer.echo(
        f"{report['customers']} customers ({steps}); {sum(report['perks_granted'].values())} perks granted, "
        f"{sum(report['rejections'].values())} lines rejected; outputs in {out}"
    )


def whatif(
    ctx: typer.Context,
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="JSON-lines event file."),
    candidate: Path = typer.Option(..., dir_okay=False, help="The policy file to try."),
    out: Path = typer.Option(..., file_okay=False, help="Directory for the outputs."),
    policy: Path | None = typer.Option(
        None, dir_okay=False, help="The current policy file (default: ESCALERA_POLICY_FILE)."
    ),
    as_of: str | None = typer.Option(None, help="Final sweep time (default: the latest occurred_at in the file)."),
) -> None:
    """Replay an event file under the current policy and a candidate; write who moves, where, and what it costs."""
    # The policy files are not checked by typer (`exists`): a missing one is the policy loader's one line.
    from engine.offline.whatif import Side, compare_file, write_whatif

    settings: Settings = ctx.obj
    current_file = policy or settings.policy_file
    sides = [
        Side(None if path is None else path.name, effective, settings.decode_limits(effective.currencies))
        for path, effective in ((current_file, load_policy(current_file)), (candidate, load_policy(candidate)))
    ]
    moment = None if as_of is None else parse_timestamp(as_of)
    with file_errors("write --out", out):
        out.mkdir(parents=True, exist_ok=True)  # before the replays: a wrong --out is told at once
        with reading_progress("replaying twice", file) as advance:
            comparison = compare_file(
                file, sides[0], sides[1], datetime.now(UTC), moment, advance, settings.topic_partitions
            )
        perks = write_whatif(comparison, out)
    matrix = comparison.matrix()
    movers = sum(n for step, row in matrix.items() for to, n in row.items() if to != step)
    total = perks["total"]
    typer.echo(
        f"{len(comparison.customers)} customers, {movers} on another step with {sides[1].name}; perks granted "
        f"{total['current']['granted']} -> {total['candidate']['granted']}; outputs in {out}"
    )
