"""Commands of the streaming worker: `escalera worker` runs one; `escalera explain ID` asks a worker's query API
where a customer stands and why, and prints it readably."""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import typer
from pydantic import SecretStr
from rich.console import Console
from rich.markup import escape
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from engine.broker.check import check_broker
from engine.broker.topics import ensure_topics
from engine.errors import EscaleraError
from engine.settings import ENV_PREFIX, Settings

DIMENSIONS = ("step", "activity", "frequency", "volume", "satisfaction", "influence", "relationship", "kind", "risk")


class CustomerQueryError(EscaleraError):
    """The query API did not give a customer's view (unknown customer, malformed id, or no worker answering)."""


class WebPortError(EscaleraError):
    """The worker's web address cannot be listened on: the port is taken, privileged, or the host is not ours."""


def _say(line: str) -> None:
    typer.echo(line, err=True)


def worker_command(
    ctx: typer.Context,
    tick: float = typer.Option(1.0, min=0.05, help="Seconds between each owned partition's clock ticks."),
) -> None:
    # Its help text (the docstring) is `_WORKER_HELP` below, with the settings' defaults filled in.
    from engine.loyalty import load_policy
    from engine.stream.app import use_event_loop
    from engine.stream.worker import run_worker

    settings: Settings = ctx.obj
    policy = load_policy(settings.policy_file)
    use_event_loop(settings)  # uvloop asked for and missing ends here, naming ESCALERA_EVENT_LOOP
    check_web_port(settings)  # a second worker on the same port ends here, in one line, not in Faust's traceback
    check_broker(settings, on_wait=_say)  # no broker, a wrong password or an untrusted certificate ends here
    ensure_topics(settings)
    run_worker(settings, policy, tick_seconds=tick)


_WORKER_HELP = """Run a streaming worker: consume the inbound topics, climb the ladder, publish perks and transitions.

Stops cleanly on SIGTERM or Ctrl-C: what was processed is committed, the rest is read again next time.

Settings, from ESCALERA_* environment variables (all of them: README, 'Configuration'):
ESCALERA_BOOTSTRAP_SERVERS  Kafka (default {bootstrap_servers}, as `escalera kafka`)
ESCALERA_BROKER_WAIT_SECONDS  how long to wait for Kafka at start (default {broker_wait_seconds:g})
ESCALERA_WEB_HOST / ESCALERA_WEB_PORT  HTTP: /metrics /health /customers (default {web_host} / {web_port})
ESCALERA_DATA_DIR  the worker's tables (default {data_dir})
ESCALERA_APP_ID  consumer group, the same for workers sharing the work (default {app_id})
ESCALERA_POLICY_FILE  loyalty policy (default: built in, see `escalera policy show`)
ESCALERA_LOG_LEVEL / ESCALERA_LOG_FORMAT  logs on standard output (default {log_level} / {log_format})"""


def _worker_help() -> str:
    defaults = {name: field.default for name, field in Settings.model_fields.items()}
    defaults["bootstrap_servers"] = ",".join(defaults["bootstrap_servers"])
    return _WORKER_HELP.format(**defaults)


worker_command.__doc__ = _worker_help()


def check_web_port(settings: Settings) -> None:
    """Listen on the worker's web address as aiohttp will, then let go; an address that cannot be used raises
    WebPortError naming the setting. Faust itself only fails there after starting its services, with a traceback.

    asyncio's `create_server` (aiohttp's TCPSite under Faust, `reuse_address` left unset) sets SO_REUSEADDR on POSIX,
    so this probe does too: without it a port merely in TIME_WAIT (connections of a worker just stopped, whose
    listener had it too) would be called busy while aiohttp binds it fine; with it, Linux still refuses a port that
    a socket is listening on, which is the case to catch. Like asyncio it binds every address the host resolves
    to, IPv6 ones with IPV6_V6ONLY. (Something may still take the port between this probe and Faust's bind: then
    Faust's own error is what is left.)
    """
    host = settings.web_host or None  # "": every interface, as asyncio reads it
    try:
        found = socket.getaddrinfo(host, settings.web_port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise WebPortError(
            f"the web host {settings.web_host!r} cannot be resolved ({error.strerror}): check {ENV_PREFIX}WEB_HOST"
        ) from None
    for family, kind, proto, _, address in dict.fromkeys(found):
        ip, port = str(address[0]), settings.web_port
        shown = f"[{ip}]:{port}" if family == socket.AF_INET6 else f"{ip}:{port}"
        with socket.socket(family, kind, proto) as probe:
            if os.name == "posix" and sys.platform != "cygwin":  # asyncio's own condition
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
                probe.listen(1)
            except OSError as error:
                raise WebPortError(_unusable(shown, settings, error)) from None


def _unusable(shown: str, settings: Settings, error: OSError) -> str:
    if error.errno == errno.EADDRINUSE:
        return (
            f"the web port {shown} is already in use (another worker?): set {ENV_PREFIX}WEB_PORT to a free port, "
            "or stop what listens there"
        )
    if error.errno == errno.EADDRNOTAVAIL:
        return f"{settings.web_host} is not an address of this machine: check {ENV_PREFIX}WEB_HOST (web port {shown})"
    if error.errno == errno.EACCES:
        return f"the web port {shown} needs privileges to listen on: set {ENV_PREFIX}WEB_PORT to 1024 or above"
    return f"cannot listen on {shown} ({error.strerror}): check {ENV_PREFIX}WEB_HOST and {ENV_PREFIX}WEB_PORT"


def worker_url(settings: Settings) -> str:
    """The local worker's web address: its bound host, or loopback when it listens on every interface."""
    host = "127.0.0.1" if settings.web_host in {"0.0.0.0", "::", ""} else settings.web_host
    return f"http://{host}:{settings.web_port}"


def fetch_customer(
    base_url: str, customer_id: str, timeout: float = 15.0, token: SecretStr | None = None
) -> dict[str, Any]:
    """GET /customers/{id} from any worker (it forwards to the owner): the customer's view, or a clear error. With
    `token` (ESCALERA_API_TOKEN), as the bearer token the workers then ask for."""
    url = f"{base_url.rstrip('/')}/customers/{urllib.parse.quote(customer_id, safe='')}"
    headers = {} if token is None else {"Authorization": f"Bearer {token.get_secret_value()}"}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as response:
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
        # Padded, not prefixed with spaces: a long line wraps under its own first word, not at column 0.
        heading = Text.assemble(
            f"{decision.get('at', '')}  {decision.get('kind', '')} {what}  ", (f"({decision.get('rule')})", "dim")
        )
        console.print(Padding(heading, (0, 0, 0, 2), expand=False))
        console.print(Padding(Text(str(decision.get("explanation", ""))), (0, 0, 0, 6), expand=False))


def explain(
    ctx: typer.Context,
    customer_id: str = typer.Argument(..., help="The customer's id."),
    url: str | None = typer.Option(None, help="A worker's web address (default: from ESCALERA_WEB_HOST/PORT)."),
    as_json: bool = typer.Option(False, "--json", help="Print the API's JSON as it is."),
) -> None:
    """Where a customer stands on the ladder, every classification, the figures, and why (recent decisions)."""
    settings: Settings = ctx.obj
    customer = fetch_customer(url or worker_url(settings), customer_id, token=settings.api_token)
    if as_json:
        typer.echo(json.dumps(customer, indent=2, ensure_ascii=False))
    else:
        render(customer, Console())
