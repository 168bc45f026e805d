"""`escalera audience`: the customers matching filters on their dimensions, as JSON lines or CSV, from the workers'
table (its changelog, read back from Kafka) or from a replay's customers.jsonl (issue 20). The filters are
`engine.loyalty.audience`'s, which the workers' `GET /audiences` applies too."""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import orjson
import typer

from engine.cli.offline import file_errors
from engine.errors import EscaleraError
from engine.loyalty.audience import FILTERS, Audience, parse_audience, select
from engine.settings import Settings

FORMATS = ("jsonl", "csv")
# The CSV's columns: the id, every dimension, the moment, then the figures (the recent decisions stay in JSON lines).
FIGURES = (
    "purchases_in_window",
    "median_gap_days",
    "window_spend",
    "base_currency",
    "days_since_last_purchase",
    "satisfaction_score",
    "positive_experiences",
    "negative_experiences",
    "converted_referrals",
    "audience",
    "share_of_wallet",
    "formal_complaints",
    "informal_complaints",
)
COLUMNS = ("customer_id", *FILTERS, "as_of", *FIGURES)


def _filter(name: str) -> Any:
    return typer.Option(None, f"--{name}", help=f"Any of, comma-separated: {', '.join(FILTERS[name])}.")


def audience(
    ctx: typer.Context,
    step: str | None = _filter("step"),
    activity: str | None = _filter("activity"),
    frequency: str | None = _filter("frequency"),
    volume: str | None = _filter("volume"),
    satisfaction: str | None = _filter("satisfaction"),
    influence: str | None = _filter("influence"),
    relationship: str | None = _filter("relationship"),
    kind: str | None = _filter("kind"),
    permanent: str | None = _filter("permanent"),
    risk: str | None = _filter("risk"),
    output_format: str = typer.Option("jsonl", "--format", help="jsonl (the customers' views) or csv."),
    out: Path | None = typer.Option(None, "--out", help="Write to this file (default: standard output)."),
    from_replay: Path | None = typer.Option(
        None, "--from-replay", help="A replay's customers.jsonl (or its folder) instead of the workers' table."
    ),
) -> None:
    """The customers matching every filter given (a filter: any of its values), by id, as JSON lines or CSV.

    From the workers' table (its changelog in Kafka: ESCALERA_BOOTSTRAP_SERVERS, ESCALERA_APP_ID) unless
    --from-replay names a replay's output. The same filters as the workers' GET /audiences."""
    settings: Settings = ctx.obj
    given = {"step": step, "activity": activity, "frequency": frequency, "volume": volume,
             "satisfaction": satisfaction, "influence": influence, "relationship": relationship, "kind": kind,
             "permanent": permanent, "risk": risk}  # fmt: skip
    wanted = parse_audience(given)  # an unknown value ends here, naming the option
    if output_format not in FORMATS:
        raise EscaleraError(f"--format: unknown value {output_format!r} (known: {', '.join(FORMATS)})")
    customers = replay_customers(from_replay) if from_replay is not None else table_customers(settings)
    chosen = select(customers, wanted)
    if out is None:
        write_audience(chosen, output_format, sys.stdout)
    else:
        with file_errors("write", out), out.open("w", encoding="utf-8", newline="") as sink:
            write_audience(chosen, output_format, sink)
    typer.echo(f"{len(chosen)} customers matched{_described(wanted)}", err=True)


def _described(wanted: Audience) -> str:
    return "" if not wanted.wanted else " (" + " ".join(f"{name}={values}" for name, values in wanted.query()) + ")"


def table_customers(settings: Settings) -> list[dict[str, Any]]:
    """Every customer of the workers' table, as its changelog holds them, as views (each as of its own clock, as the
    query API shows them)."""
    from engine.broker.readback import table_states
    from engine.loyalty import load_policy
    from engine.loyalty.view import view

    policy = load_policy(settings.policy_file)
    return [view(state, policy) for state in table_states(settings).values()]


def replay_customers(path: Path) -> Iterator[dict[str, Any]]:
    """The views of a replay's customers.jsonl (`path`, or `path`/customers.jsonl for its output folder)."""
    source = path / "customers.jsonl" if path.is_dir() else path
    with file_errors("read", source), source.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                customer = orjson.loads(line)
            except orjson.JSONDecodeError:
                raise EscaleraError(f"--from-replay: {source} line {number} is not JSON") from None
            if not isinstance(customer, dict) or "customer_id" not in customer:
                raise EscaleraError(f"--from-replay: {source} line {number} is not a customer's view")
            yield customer


def write_audience(customers: list[Mapping[str, Any]], output_format: str, sink: IO[str]) -> None:
    """The customers as JSON lines (their views as they are) or as CSV (`COLUMNS`; the recent decisions left out)."""
    if output_format == "jsonl":
        for customer in customers:
            sink.write(orjson.dumps(customer).decode() + "\n")
        return
    writer = csv.writer(sink, lineterminator="\n")
    writer.writerow(COLUMNS)
    for customer in customers:
        figures = customer.get("figures") or {}
        row = [_cell(customer.get(name)) for name in COLUMNS[: len(COLUMNS) - len(FIGURES)]]
        writer.writerow([*row, *(_cell(figures.get(name)) for name in FIGURES)])


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)
