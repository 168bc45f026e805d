"""Commands about the event contract: `escalera validate` and `escalera schemas export`."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import orjson
import typer

from engine.cli.offline import file_errors
from engine.loyalty.policy import load_policy
from engine.settings import Settings
from schemas.decoder import DecodeLimits, Rejection, decode, too_large_message

schemas_app = typer.Typer(help="The JSON Schemas of the event contract.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the contract commands to the CLI."""
    app.command("validate")(validate)
    app.add_typer(schemas_app, name="schemas")
    schemas_app.command("export")(export)
    schemas_app.command("docs")(docs)


def validate(
    ctx: typer.Context,
    # No typer checks on FILE: "-" is not a file, and opening it says in one line what is wrong with a file.
    file: Path = typer.Argument(..., help="JSON-lines file, one event per line ('-': standard input)."),
    currencies: str | None = typer.Option(
        None, help="Comma-separated currency codes to accept (default: those with a rate in the policy)."
    ),
) -> None:
    """Check a JSON-lines file of events: one JSON line per rejected line on stdout; exit 1 if any."""
    settings: Settings = ctx.obj
    if currencies is None:
        accepted = load_policy(settings.policy_file).currencies
    else:
        accepted = frozenset(c.strip() for c in currencies.split(",") if c.strip())
    limits = settings.decode_limits(accepted)
    if str(file) == "-":
        total, bad = _report_rejections(sys.stdin.buffer, limits)
    else:
        with file_errors("read", file):
            handle = file.open("rb")  # only the opening: a write to stdout that fails is not about FILE
        with handle:
            total, bad = _report_rejections(handle, limits)
    typer.echo(f"{total} lines: {total - bad} valid, {bad} rejected", err=True)
    if bad:
        raise typer.Exit(1)


def _report_rejections(lines: BinaryIO, limits: DecodeLimits) -> tuple[int, int]:
    """Write one JSON line per rejected line on stdout; return how many lines were read, and rejected."""
    now = datetime.now(UTC)
    total = bad = 0
    for number, (line, size) in enumerate(bounded_lines(lines, limits.max_bytes), start=1):
        total += 1
        result = decode(line, now=now, limits=limits)
        if isinstance(result, Rejection):
            bad += 1
            message = too_large_message(size, limits) if result.reason == "too_large" else result.message
            report = {"line": number, "reason": result.reason, "message": message}
            sys.stdout.buffer.write(orjson.dumps(report) + b"\n")
    return total, bad


def bounded_lines(handle: BinaryIO, limit: int) -> Iterator[tuple[bytes, int]]:
    """Each line of a binary stream without its ending, and its size; of a line over `limit` bytes only
    limit + 1 are held."""
    while head := handle.readline(limit + 2):
        size, last, before = len(head), head, b""
        while not last.endswith(b"\n") and (chunk := handle.readline(1 << 16)):
            size, last, before = size + len(chunk), chunk, last
        if last.endswith(b"\n"):
            size -= 2 if last.endswith(b"\r\n") or (last == b"\n" and before.endswith(b"\r")) else 1
        yield head[: min(size, limit + 1)], size


def export(directory: Path = typer.Argument(..., file_okay=False, help="Where to write the files.")) -> None:
    """Write the JSON Schema of every event type into DIRECTORY."""
    from schemas.export import export_json_schemas

    with file_errors("write the JSON Schemas into", directory):
        written = export_json_schemas(directory)
    typer.echo(f"wrote {len(written)} JSON Schema files to {directory}")


def docs(
    file: Path = typer.Argument(Path("docs/events.md"), dir_okay=False, help="Where to write the page."),
) -> None:
    """Write the events reference page (every event and field, with an example each)."""
    from schemas.docs import events_markdown

    page = events_markdown(Path(__file__).resolve().parents[2] / "schemas" / "examples")
    with file_errors("write", file):
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(page)
    typer.echo(f"wrote {file}")
