"""`escalera demo`: a local Kafka, a streaming worker, a simulated shop publishing to it, the ladder live.

The view reads what a marketing system would: the perk, transition and dead-letter topics, and the worker
group's committed offsets for progress. The simulated shop lives in the past, so the worker's idle clock
follows event time only (not the wall clock).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from engine.broker.connection import kafka_python_options
from engine.broker.local import free_port, start_broker
from engine.broker.publish import publish
from engine.broker.readback import committed_records, table_states
from engine.broker.topics import ensure_topics
from engine.cli.offline import file_errors
from engine.errors import EscaleraError
from engine.loyalty import DEFAULT_POLICY, CustomerState, Policy
from engine.offline.compare import state_differences
from engine.offline.lines import read_lines
from engine.offline.outputs import write_customers
from engine.offline.replay import Replay
from engine.offline.simulation import SimulationSpec, write
from engine.settings import Settings
from schemas.events import STEPS

QUIET_SECONDS = 4.0  # once the worker has read everything, outputs this long unchanged mean it is done
PROGRESS_SECONDS = 5.0  # between two progress lines when the output is not a terminal
RATE_WINDOW = 5.0  # the view's rates are over the last this many seconds


class DemoError(EscaleraError):
    """The demo's streaming worker stopped before the demo was over (its log says why)."""


class DemoInterrupted(EscaleraError):
    """The demo's worker stopped cleanly before the demo was over: Ctrl-C reached it (the terminal sends it to the
    whole process group), or someone stopped it."""


@dataclass(frozen=True)
class DemoSpec:
    """What the demo simulates and for how long it runs."""

    customers: int = 500
    days: int = 365
    seed: int = 1
    rate: float = 2000.0
    duration: float = 0.0  # 0: until the worker has processed every published event
    out: Path = Path("escalera-demo")


def demo_command(
    ctx: typer.Context,
    customers: int = typer.Option(500, min=1, help="Customers to simulate."),
    seed: int = typer.Option(1, help="Simulation seed."),
    rate: float = typer.Option(2000.0, min=1, help="Events published per second."),
    duration: float = typer.Option(0.0, min=0, help="Stop after this many seconds (0: when every event is in)."),
    out: Path = typer.Option(Path("escalera-demo"), file_okay=False, help="Where the outputs go."),
) -> None:
    """Start a local Kafka and a streaming worker, publish a simulated shop, and watch customers climb the ladder."""
    spec = DemoSpec(customers=customers, seed=seed, rate=rate, duration=duration, out=out)
    try:
        where = run_demo(spec, ctx.obj, lambda text: typer.echo(text, err=True))
    except (KeyboardInterrupt, DemoInterrupted):
        # issue 16: Ctrl-C printed "the worker stopped unexpectedly (exit code 0)" with a traceback
        typer.echo(f"\ndemo interrupted: the worker and the local Kafka are stopped; what was written so far is in "
                   f"{out}/", err=True)  # fmt: skip
        raise typer.Exit(130) from None
    typer.echo(
        f"\noutputs in {where}/: customers.jsonl (the worker's table), perks.jsonl, transitions.jsonl, rejected.jsonl "
        f"(its topics), funnel.png, worker.log; `{command_name()} replay {where / 'events.jsonl'} --out "
        f"escalera-replay` gives the same customers with a summary"
    )


def command_name() -> str:
    """How the user can type this command again from here: `escalera` when that is on PATH and is this one (an
    activated virtual environment), else the path they ran (`.venv/bin/escalera` after `make demo`) — the hint
    `escalera replay …` was "command not found" after `make demo` (issue 16)."""
    ran = Path(sys.argv[0])
    on_path = shutil.which("escalera")
    if ran.name != "escalera":  # python -m engine.cli
        return "python -m engine.cli"
    if on_path is not None and Path(on_path).resolve() == ran.resolve():
        return "escalera"
    return os.path.relpath(ran) if not ran.is_absolute() or ran.is_relative_to(Path.cwd()) else str(ran)


def run_demo(spec: DemoSpec, settings: Settings, say: Callable[[str], None], policy: Policy = DEFAULT_POLICY) -> Path:
    """Run the whole demo; return the directory holding its outputs."""
    with file_errors("write --out", spec.out):
        spec.out.mkdir(parents=True, exist_ok=True)
    events = spec.out / "events.jsonl"
    lines = write(SimulationSpec(spec.customers, spec.days, spec.seed, duplicates=0.01, malformed=0.01), events)
    say(f"simulated {lines} events of {spec.customers} customers into {events}")
    broker = start_broker()
    try:
        say(f"kafka ready at {broker.bootstrap_servers} (started in {broker.started_in_seconds:.1f} s)")
        local = settings.model_copy(
            update={"bootstrap_servers": (broker.bootstrap_servers,), "topic_partitions": 4,
                    "wall_clock_when_idle": False, "data_dir": (spec.out / "worker-tables").resolve()}
        )  # fmt: skip
        # Each demo starts a new broker: tables kept by an earlier run belong to a broker that is gone, and Faust
        # refuses them (ConsistencyError: persisted offset higher than the new changelog's end) — issue 16.
        shutil.rmtree(local.data_dir, ignore_errors=True)
        ensure_topics(local)
        worker = _start_worker(local, spec.out / "worker.log")
        say(f"worker started (pid {worker.pid}, log {spec.out / 'worker.log'})")
        stopping = threading.Event()

        def until_stopped() -> Iterator[bytes]:
            for line in read_lines(events):
                if stopping.is_set():
                    return
                yield line

        publisher = threading.Thread(
            target=publish, args=(until_stopped(), local), kwargs={"rate": spec.rate}, daemon=True
        )
        publisher.start()
        try:
            received = _watch(local, spec, lines, publisher, worker)
        finally:
            # Interrupted or not, the publisher ends before the broker does (else its producer's exit handler
            # prints a traceback trying to flush to a broker that is gone: issue 16).
            stopping.set()
            worker.send_signal(signal.SIGTERM)  # a clean stop: what was processed is committed
            worker.wait(60)
            publisher.join(30)
        states = table_states(local)
        title = f"Escalera ladder from the streaming worker ({len(states)} customers)"
        write_customers(states, spec.out, policy, title)  # each customer as of their own clock
    finally:
        broker.stop()
    say("")
    say(
        f"{len(states)} customers, {received['perks']} perks granted, {received['transitions']} transitions, "
        f"{received['dead_letters']} events dead-lettered (worker exit code {worker.returncode})"
    )
    say(_against_the_replay(states, events, policy, settings))
    return spec.out


def _against_the_replay(states: dict[str, CustomerState], events: Path, policy: Policy, settings: Settings) -> str:
    """Whether the worker's customers equal, in every field, what `escalera replay` makes of the same file; if not,
    which customers and fields differ (the first few)."""
    replay = Replay(policy, settings.decode_limits(policy.currencies), datetime.now(UTC), lambda _: None,
                    lambda _: None, settings.topic_partitions)  # fmt: skip
    for line in read_lines(events):
        replay.feed(line)
    replay.finish()
    differences = state_differences(states, replay.states)
    if not differences:
        return f"the worker's {len(states)} customers equal the replay's in every field (the replay of {events})"
    shown = "; ".join(f"{customer}: {what}" for customer, what in list(differences.items())[:3])
    return f"{len(differences)} of {len(replay.states)} customers differ from the replay of {events}: {shown}"


def _start_worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "ESCALERA_BOOTSTRAP_SERVERS": ",".join(settings.bootstrap_servers),
        "ESCALERA_TOPIC_PARTITIONS": str(settings.topic_partitions),
        "ESCALERA_WALL_CLOCK_WHEN_IDLE": "false",
        "ESCALERA_DATA_DIR": str(settings.data_dir),
        "ESCALERA_WEB_PORT": str(free_port()),
    }
    command = [sys.executable, "-m", "engine.cli", "worker", "--tick", "0.2"]
    return subprocess.Popen(command, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def _watch(
    settings: Settings, spec: DemoSpec, lines: int, publisher: threading.Thread, worker: subprocess.Popen[bytes]
) -> Counter[str]:
    """Show the ladder live from the outbound topics until the worker is done (or `duration` is over); return the
    records received from each ("perks", "transitions", "dead_letters").

    On a terminal the ladder is redrawn in place; otherwise (CI logs, `make demo > log`) a line of progress goes to
    standard error every PROGRESS_SECONDS and the ladder is printed once at the end (issue 16: nothing appeared
    between "worker started" and the final table)."""
    from kafka import KafkaConsumer

    outputs = {
        settings.topic_perks: "perks",
        settings.topic_transitions: "transitions",
        settings.topic_dlq: "dead_letters",
    }
    files = {
        "perks": (spec.out / "perks.jsonl").open("wb"),
        "transitions": (spec.out / "transitions.jsonl").open("wb"),
        "dead_letters": (spec.out / "rejected.jsonl").open("wb"),
    }
    consumer = KafkaConsumer(*outputs, auto_offset_reset="earliest", enable_auto_commit=False,
                             **kafka_python_options(settings))  # fmt: skip
    received: Counter[str] = Counter()  # records read from each outbound topic, by output name
    steps: dict[str, str] = {}
    rates = RecentRates()
    console = Console()
    began = last_output = last_line = time.monotonic()
    read = 0
    try:
        view = Live(_view(steps, received, read, lines, rates), console=console, refresh_per_second=4)
        with view if console.is_terminal else nullcontext() as live:
            while worker.poll() is None:
                batches = consumer.poll(timeout_ms=250, max_records=5000)
                for records in batches.values():
                    for record in records:
                        kind = outputs[record.topic]
                        received[kind] += 1
                        files[kind].write(record.value + b"\n")
                        decision = orjson.loads(record.value)
                        if decision.get("type") == "customer.step_changed":
                            steps[decision["customer_id"]] = decision["to_step"]
                        elif decision.get("type") == "customer.erased":  # (on both topics: the second finds none)
                            steps.pop(decision["customer_id"], None)
                        last_output = time.monotonic()
                now = time.monotonic()
                read = committed_records(settings)
                rates.add(now, received)
                if live is not None:
                    live.update(_view(steps, received, read, lines, rates))
                elif now - last_line >= PROGRESS_SECONDS:
                    print(f"{now - began:4.0f} s  {_status(received, read, lines, rates, sep=' · ')}", file=sys.stderr,
                          flush=True)  # fmt: skip
                    last_line = now
                if spec.duration and now - began >= spec.duration:
                    break
                if not publisher.is_alive() and read >= lines and now - last_output > QUIET_SECONDS:
                    break
    finally:
        consumer.close()
        for handle in files.values():
            handle.close()
    if worker.poll() is not None:
        log = spec.out / "worker.log"
        if worker.returncode == 0:
            raise DemoInterrupted("the worker was stopped")
        raise DemoError(f"the worker stopped unexpectedly (exit code {worker.returncode}); see its log {log}")
    if not console.is_terminal:
        console.print(_view(steps, received, read, lines, None), crop=False)
    return received


class RecentRates:
    """Records per second over the last RATE_WINDOW seconds, so the view's rates fall to 0 when the work ends
    instead of decaying for ever as an average over the whole run (issue 16)."""

    def __init__(self) -> None:
        self._seen: deque[tuple[float, int, int]] = deque()

    def add(self, now: float, received: Counter[str]) -> None:
        """Note the counts at `now`."""
        self._seen.append((now, received["transitions"], received["perks"]))
        while len(self._seen) > 2 and now - self._seen[1][0] >= RATE_WINDOW:
            self._seen.popleft()

    def per_second(self) -> tuple[float, float]:
        """Transitions and perks per second over the window (0 before two observations)."""
        if len(self._seen) < 2:
            return 0.0, 0.0
        (then, transitions, perks), (now, transitions_now, perks_now) = self._seen[0], self._seen[-1]
        seconds = now - then
        return (transitions_now - transitions) / seconds, (perks_now - perks) / seconds


def _status(received: Counter[str], read: int, lines: int, rates: RecentRates | None, sep: str) -> str:
    """What the worker has done; with `rates`, how fast its outputs arrive now."""
    transitions, perks = received["transitions"], received["perks"]
    if rates is not None:
        transition_rate, perk_rate = rates.per_second()
        return (
            f"worker: {read}/{lines} events committed, {received['dead_letters']} dead-lettered{sep}"
            f"outputs: {transitions} transitions ({transition_rate:,.0f}/s), {perks} perks ({perk_rate:,.0f}/s)"
        )
    return (
        f"worker: {read}/{lines} events committed, {received['dead_letters']} dead-lettered{sep}"
        f"outputs: {transitions} transitions, {perks} perks"
    )


def _view(steps: dict[str, str], received: Counter[str], read: int, lines: int, rates: RecentRates | None) -> Any:
    counts = Counter(steps.values())
    widest = max(counts.values(), default=0) or 1
    table = Table(title="Escalera: the loyalty ladder, live from the streaming worker", expand=False)
    table.add_column("step")
    table.add_column("customers", justify="right")
    table.add_column("", min_width=30)  # the bars' full width from the start: the title does not wrap while empty
    for step in STEPS:
        table.add_row(step, str(counts.get(step, 0)), "█" * round(30 * counts.get(step, 0) / widest))
    # Two short lines, each under 80 columns: one long line was hard-wrapped mid-phrase (issue 16).
    return Group(table, Text(_status(received, read, lines, rates, sep="\n"), no_wrap=True, overflow="ellipsis"))
