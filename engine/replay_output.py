"""Replay an event file and write the outputs: customers, perks, transitions, dead letters, summary, funnel."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from engine.funnel import draw_funnel
from engine.loyalty import Decision, Policy
from engine.loyalty.view import view
from engine.publish import read_lines
from engine.replay import Replay
from engine.report import summary
from schemas.decoder import DecodeLimits
from schemas.events import EventRejected

JSON = orjson.OPT_SORT_KEYS


def replay_file(
    source: Path,
    out: Path,
    policy: Policy,
    limits: DecodeLimits,
    now: datetime,
    as_of: datetime | None = None,
    on_line: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Replay `source` into `out`; the same input and policy always give byte-identical files."""
    out.mkdir(parents=True, exist_ok=True)
    with (
        (out / "perks.jsonl").open("wb") as perks,
        (out / "transitions.jsonl").open("wb") as transitions,
        (out / "rejected.jsonl").open("wb") as rejected,
    ):

        def on_decision(decision: Decision) -> None:
            target = perks if decision.type == "perk.granted" else transitions
            target.write(decision.model_dump_json().encode() + b"\n")

        def on_rejected(letter: EventRejected) -> None:
            rejected.write(letter.model_dump_json().encode() + b"\n")

        replay = Replay(policy, limits, now, on_decision, on_rejected)
        for line in read_lines(source):
            replay.feed(line)
            if on_line is not None:
                on_line(len(line) + 1)
        replay.finish(as_of)
    moment = as_of or replay.clock or now
    with (out / "customers.jsonl").open("wb") as customers:
        for customer_id in sorted(replay.states):
            customers.write(orjson.dumps(view(replay.states[customer_id], policy), option=JSON) + b"\n")
    report = summary(replay.states.values(), replay.tally, policy, moment)
    (out / "summary.json").write_bytes(orjson.dumps(report, option=JSON | orjson.OPT_INDENT_2) + b"\n")
    draw_funnel(
        report["steps"], out / "funnel.png", f"Escalera ladder as of {moment.date()} ({len(replay.states)} customers)"
    )
    return report
