"""Commands of the streaming worker: `escalera worker` runs one; `escalera explain ID` asks a worker's query API
where a customer stands and why, and prints it readably."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from engine.broker.check import check_broker
from engine.broker.topics import ensure_topics
from engine.errors import EscaleraError
from engine.settings import Settings

DIMENSIONS = ("step", "activity", "frequency", "volume", "satisfaction", "influence", "relationship", "kind", "risk")


class CustomerQueryError(EscaleraError):
    """The query API did not give a customer's view (unknown customer, malformed id, or no worker answering)."""


def worker_command(
    ctx: typer.Context,
    tick: float = typer.Option(1.0, min=0.05, help="Seconds between each owned partition's clock ticks."),
) -> None:
    """Run a streaming worker: consume the inbound topics, climb the ladder, publish perks and transitions.

    Stops cleanly on SIGTERM or Ctrl-C: what was processed is committed, the rest is read again next time.
    """
    from engine.loyalty import load_policy
    from engine.stream.worker import run_worker

    settings: Settings = ctx.obj
    check_broker(settings)  # a wrong password or an untrusted certificate ends here, with a message
    ensure_topics(settings)
    run_worker(settings, load_policy(settings.policy_file), tick_seconds=tick)


def worker_url(settings: Settings) -> str:
    """The local worker's web address: its bound host, or loopback when it listens on every interface."""
    host = "127.0.0.1" if settings.web_host in {"0.0.0.0", "::", ""} else settings.web_host
    return f"http://{host}:{settings.web_port}"


def fetch_customer(base_url: str, customer_id: str, timeout: float = 15.0) -> dict[str, Any]:
    """GET /customers/{id} from any worker (it forwards to the owner): the customer's view, or a clear error."""
    url = f"{base_url.rstrip('/')}/customers/{urllib.parse.quote(customer_id, safe='')}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            found: dict[str, Any] = json.loads(response.read())
            return found
    except urllib.error.HTTPError as error:
        try:
            reason = json.loads(error.read()).get("error", error.reason)
        except ValueError:
            reason = error.reason
        raise CustomerQueryError(f"{url}: {error.code} {reason}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise CustomerQueryError(
            f"no worker answered at {base_url} ({reason}): is `escalera worker` running there? "
            "(--url or ESCALERA_WEB_HOST / ESCALERA_WEB_PORT say where)"
        ) from None


def render(customer: dict[str, Any], console: Console) -> None:
    """The customer's dimensions, figures and recent decisions with their explanations."""
    console.print(f"[bold]{escape(customer['customer_id'])}[/bold]  as of {customer['as_of']}")
    where = Table(show_header=False, box=None, pad_edge=False)
    for dimension in DIMENSIONS:
        where.add_row(dimension, str(customer.get(dimension) or "-"))
    where.add_row("permanent", "yes" if customer.get("permanent") else "no")
    console.print(where)
    figures = Table(title="figures", show_header=False, box=None, title_justify="left")
    for name, value in customer["figures"].items():
        figures.add_row(name.replace("_", " "), "-" if value is None else str(value))
    console.print(figures)
    decisions = customer.get("recent_decisions") or []
    if not decisions:
        console.print("no decisions yet")
        return
    console.print("[bold]recent decisions[/bold] (newest last)")
    for decision in decisions:
        what = decision.get("perk") or " → ".join(
            str(decision.get(side) or "none") for side in ("from", "to") if side in decision
        )
        console.print(
            f"  {decision.get('at', '')}  {decision.get('kind', '')} {what}  [dim]({decision.get('rule')})[/dim]"
        )
        console.print(f"      {decision.get('explanation', '')}")


def explain(
    ctx: typer.Context,
    customer_id: str = typer.Argument(..., help="The customer's id."),
    url: str | None = typer.Option(None, help="A worker's web address (default: from ESCALERA_WEB_HOST/PORT)."),
    as_json: bool = typer.Option(False, "--json", help="Print the API's JSON as it is."),
) -> None:
    """Where a customer stands on the ladder, every classification, the figures, and why (recent decisions)."""
    settings: Settings = ctx.obj
    customer = fetch_customer(url or worker_url(settings), customer_id)
    if as_json:
        typer.echo(json.dumps(customer, indent=2, ensure_ascii=False))
    else:
        render(customer, Console())
