"""Replay an event file and write the outputs: customers, perks, transitions, dead letters, summary, funnel."""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from engine.loyalty import CustomerState, Policy, Population, Published
from engine.loyalty.view import view
from engine.offline.funnel import draw_funnel
from engine.offline.lines import read_lines
from engine.offline.replay import DEFAULT_PARTITIONS, Replay
from engine.offline.summary import summary
from schemas.construct import flat_json
from schemas.decoder import DecodeLimits
from schemas.events import STEPS, EventRejected, outbound_streams

JSON = orjson.OPT_SORT_KEYS
BUFFER = 1 << 20  # bytes written at once to the decision files (a write call per 8 KiB by default: about 25 decisions)


def replay_file(
    source: Path,
    out: Path,
    policy: Policy,
    limits: DecodeLimits,
    now: datetime,
    as_of: datetime | None = None,
    on_line: Callable[[int], None] | None = None,
    partitions: int = DEFAULT_PARTITIONS,
) -> dict[str, Any]:
    """Replay `source` into `out`; the same input, policy and partition count (`Replay`) always give byte-identical
    files."""
    with DecisionFiles(out) as files:
        replay = Replay(policy, limits, now, files.decision, files.rejected, partitions)
        replay.on_midnight = _freeze_survivors
        try:
            for line in read_lines(source):
                replay.feed(line)
                if on_line is not None:
                    on_line(len(line) + 1)
            replay.finish(as_of)
        finally:
            gc.unfreeze()
    return write_outputs(replay, out, policy, as_of or replay.clock or now)


def _freeze_survivors(day: datetime, population: Population) -> None:
    """At each midnight, what is alive then (the customers' states, mostly) leaves the cyclic garbage collector's
    generations (`gc.freeze`): the states hold no reference cycles, and collections traversing them again and again
    cost about a tenth of the replay's time. The collector stays on for everything newer; `replay_file` puts the
    frozen objects back when it is done (and so unfreezes whatever its caller had frozen)."""
    gc.freeze()


class DecisionFiles:
    """perks.jsonl, transitions.jsonl and rejected.jsonl, written as decisions come."""

    def __init__(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.out = out

    def __enter__(self) -> DecisionFiles:
        self.perks = (self.out / "perks.jsonl").open("wb", buffering=BUFFER)
        self.transitions = (self.out / "transitions.jsonl").open("wb", buffering=BUFFER)
        self.dead_letters = (self.out / "rejected.jsonl").open("wb")
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in (self.perks, self.transitions, self.dead_letters):
            handle.close()

    def decision(self, decision: Published) -> None:
        """Append a perk or a transition; an erasure notice to both files, as the worker sends it to both topics."""
        line = flat_json(decision) + b"\n"
        for stream in outbound_streams(decision.type):
            (self.perks if stream == "perks" else self.transitions).write(line)

    def rejected(self, letter: EventRejected) -> None:
        """Append a dead letter."""
        self.dead_letters.write(letter.model_dump_json().encode() + b"\n")


def write_outputs(replay: Replay, out: Path, policy: Policy, moment: datetime) -> dict[str, Any]:
    """customers.jsonl, summary.json and funnel.png from a finished replay; returns the summary."""
    title = f"Escalera ladder as of {moment.date()} ({len(replay.states)} customers)"
    write_customers(replay.states, out, policy, title, at=moment)
    report = summary(replay.states.values(), replay.counts, policy, moment)
    (out / "summary.json").write_bytes(orjson.dumps(report, option=JSON | orjson.OPT_INDENT_2) + b"\n")
    return report


def write_customers(
    states: Mapping[str, CustomerState], out: Path, policy: Policy, title: str, at: datetime | None = None
) -> None:
    """customers.jsonl (every customer's view by id, as of `at`, else as of each customer's own clock) and
    funnel.png (customers per step, under `title`): the replay's and the demo's."""
    with (out / "customers.jsonl").open("wb", buffering=BUFFER) as customers:
        for customer_id in sorted(states):
            customers.write(orjson.dumps(view(states[customer_id], policy, at), option=JSON) + b"\n")
    steps = Counter(state.step or "possible" for state in states.values())
    draw_funnel({step: steps.get(step, 0) for step in STEPS}, out / "funnel.png", title)
