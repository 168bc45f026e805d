"""`escalera demo`: a local Kafka, a simulated shop publishing to it, and the loyalty core consuming it live."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from engine.local_kafka import start_broker
from engine.loyalty import DEFAULT_POLICY, Decision, Policy
from engine.publish import publish, read_lines
from engine.replay import Replay
from engine.replay_output import DecisionFiles, write_outputs
from engine.settings import Settings
from engine.simulation import SimulationSpec, write
from engine.topics import ensure_topics
from schemas.decoder import DecodeLimits
from schemas.events import STEPS, EventRejected


@dataclass(frozen=True)
class DemoSpec:
    """What the demo simulates and for how long it runs."""

    customers: int = 500
    days: int = 365
    seed: int = 1
    rate: float = 2000.0
    duration: float = 0.0  # 0: until every published event has been consumed
    out: Path = Path("escalera-demo")


def run_demo(spec: DemoSpec, settings: Settings, say: Callable[[str], None], policy: Policy = DEFAULT_POLICY) -> Path:
    """Run the whole demo; return the directory holding its outputs."""
    spec.out.mkdir(parents=True, exist_ok=True)
    events = spec.out / "events.jsonl"
    lines = write(SimulationSpec(spec.customers, spec.days, spec.seed, duplicates=0.01, malformed=0.01), events)
    say(f"simulated {lines} events of {spec.customers} customers into {events}")
    broker = start_broker()
    try:
        say(f"kafka ready at {broker.bootstrap_servers} (started in {broker.started_in_seconds:.1f} s)")
        local = settings.model_copy(update={"bootstrap_servers": (broker.bootstrap_servers,), "topic_partitions": 4})
        ensure_topics(local)
        publisher = threading.Thread(
            target=publish, args=(read_lines(events), local), kwargs={"rate": spec.rate}, daemon=True
        )
        publisher.start()
        with DecisionFiles(spec.out) as files:
            counter = _Counter(files)
            replay = Replay(policy, _limits(settings, policy), datetime.now(UTC), counter.decision, counter.rejected)
            _consume(local, replay, lines, spec.duration, counter)
            replay.finish()
        report = write_outputs(replay, spec.out, policy, replay.clock or datetime.now(UTC))
    finally:
        broker.stop()
    say("")
    say(
        f"{report['customers']} customers, {sum(report['perks_granted'].values())} perks granted, "
        f"{sum(report['rejections'].values())} events dead-lettered"
    )
    return spec.out


class _Counter:
    def __init__(self, files: DecisionFiles) -> None:
        self.files, self.perks, self.transitions, self.rejected_count = files, 0, 0, 0

    def decision(self, decision: Decision) -> None:
        self.files.decision(decision)
        if decision.type == "perk.granted":
            self.perks += 1
        else:
            self.transitions += 1

    def rejected(self, letter: EventRejected) -> None:
        self.files.rejected(letter)
        self.rejected_count += 1


def _limits(settings: Settings, policy: Policy) -> DecodeLimits:
    return DecodeLimits(
        max_bytes=settings.max_event_bytes,
        max_skew=timedelta(seconds=settings.max_clock_skew_seconds),
        currencies=policy.currencies,
    )


def _consume(settings: Settings, replay: Replay, expected: int, duration: float, counter: _Counter) -> None:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        *settings.inbound_topics,
        group_id=f"{settings.app_id}-demo",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **settings.kafka_client_options(),
    )
    began = time.monotonic()
    seen = 0
    try:
        with Live(_view(replay, counter, seen, expected, 0.0), refresh_per_second=4, transient=False) as live:
            while seen < expected and (not duration or time.monotonic() - began < duration):
                batches = consumer.poll(timeout_ms=250, max_records=2000)
                for records in batches.values():
                    for record in records:
                        replay.feed(record.value)
                        seen += 1
                live.update(_view(replay, counter, seen, expected, time.monotonic() - began))
    finally:
        consumer.close()


def _view(replay: Replay, counter: _Counter, seen: int, expected: int, elapsed: float) -> Any:
    steps: dict[str, int] = dict.fromkeys(STEPS, 0)
    for state in replay.states.values():
        steps[state.step or "possible"] += 1
    widest = max(steps.values()) or 1
    table = Table(title="Escalera: the loyalty ladder, live from Kafka", expand=False)
    table.add_column("step")
    table.add_column("customers", justify="right")
    table.add_column("")
    for step, count in steps.items():
        table.add_row(step, str(count), "█" * round(30 * count / widest))
    rate = seen / elapsed if elapsed else 0.0
    status = Text(
        f"events consumed {seen}/{expected} ({rate:,.0f}/s) · transitions {counter.transitions} · "
        f"perks {counter.perks} · dead letters {counter.rejected_count} · event time "
        f"{replay.clock.date() if replay.clock else '-'}"
    )
    return Group(table, status)
