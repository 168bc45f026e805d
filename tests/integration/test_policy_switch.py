"""Rolling a new policy out to live workers (issue 20, item 2), on the real broker: a worker runs the default policy
over a shop's history (published while it runs), is stopped, and `escalera whatif` is asked what a candidate (habitual
at 3 purchases instead of 4, their median gap up to 120 days instead of 60) would decide if rolled out now; the worker
restarted with the candidate re-evaluates every customer at once, publishes exactly `switch.jsonl`, paced by
`ESCALERA_SWITCH_PERKS_PER_SECOND`, and its table ends where the prediction leaves each customer."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer

from engine.loyalty import DEFAULT_POLICY, CustomerState, Policy, day_start
from engine.loyalty.evolve import sweep_in_place
from engine.loyalty.switch import switch_in_place
from engine.offline.replay import Replay
from engine.offline.simulation import SimulationSpec, simulate
from schemas.decoder import DecodeLimits
from tests.integration.engine_harness import engine_env, publish_lines, running_workers, wait_for_states

PARTITIONS = 4
CANDIDATE = "ladder:\n  habitual_min_purchases: 3\n  habitual_max_median_gap_days: 120\n"


def records_with_times(bootstrap: str, topic: str, quiet: float = 2.0) -> list[tuple[int, dict[str, Any]]]:
    """Every decision of a topic with its record's timestamp (ms), in the order read."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=int(quiet * 1000))  # fmt: skip
    found = [(message.timestamp, orjson.loads(message.value)) for message in consumer if message.value]
    consumer.close()
    return found


def test_a_worker_restarted_with_a_new_policy_publishes_what_whatif_predicts_paced(
    bootstrap: str, tmp_path: Path
) -> None:
    lines = list(simulate(SimulationSpec(300, 365, seed=21)))
    history = tmp_path / "shop.jsonl"
    history.write_bytes(b"".join(line + b"\n" for line in lines))
    candidate_file = tmp_path / "candidate.yaml"
    candidate_file.write_text(CANDIDATE)
    candidate = Policy.model_validate({"ladder": {"habitual_min_purchases": 3, "habitual_max_median_gap_days": 120}})
    replay = Replay(DEFAULT_POLICY, DecodeLimits(currencies=DEFAULT_POLICY.currencies), datetime.now(UTC),
                    lambda _: None, lambda _: None, PARTITIONS)  # fmt: skip
    for line in lines:
        replay.feed(line)
    replay.finish()
    env = engine_env(bootstrap, PARTITIONS)
    with running_workers(env, tmp_path):
        publish_lines(env, lines)  # while the worker runs, default policy
        wait_for_states(bootstrap, env, replay.states, 240)

    # What the candidate would decide if rolled out now: `escalera whatif`, offline, as a manager runs it.
    out = tmp_path / "whatif"
    subprocess.run(
        [sys.executable, "-m", "engine.cli", "whatif", str(history), "--candidate", str(candidate_file),
         "--out", str(out)],
        check=True, env={**os.environ, **env}, capture_output=True,
    )  # fmt: skip
    predicted = [orjson.loads(line) for line in (out / "switch.jsonl").read_bytes().splitlines()]
    perks = [d for d in predicted if d["type"] == "perk.granted"]
    assert len(perks) >= 6, f"the candidate grants too few perks at the switch to see a pace: {len(perks)}"
    # Where the table ends: each customer switched, then swept by the midnights the restarted worker passes again up
    # to the last event's (its partitions' clocks are behind it: engine/stream/processor.py, `_follow_assignment`),
    # for those the new policy makes due by then (at risk sooner, here).
    assert replay.clock is not None
    last_midnight = day_start(replay.clock)
    expected: dict[str, CustomerState] = {}
    for customer_id, state in replay.states.items():
        switched = state.copy()
        switch_in_place(switched, candidate)
        if switched.due is not None and switched.due <= last_midnight:
            sweep_in_place(switched, last_midnight, candidate)
        expected[customer_id] = switched

    rate = max(1, len(perks) // 4)  # about four seconds' worth
    switch_env = {**env, "ESCALERA_POLICY_FILE": str(candidate_file), "ESCALERA_SWITCH_PERKS_PER_SECOND": str(rate)}
    began = time.time()
    with running_workers(switch_env, tmp_path) as (worker,):  # the same data directory: a rolling restart
        wait_for_states(bootstrap, env, expected, 180)
        log = worker.log.read_text()
    assert "policy switch of partition" in log
    published = records_with_times(bootstrap, env["ESCALERA_TOPIC_PERKS"])
    transitions = records_with_times(bootstrap, env["ESCALERA_TOPIC_TRANSITIONS"])
    cause = f"policy:{candidate.version}"
    at_switch = [(t, d) for t, d in published + transitions if d["caused_by"] == cause]
    assert sorted((d for _, d in at_switch), key=_key) == sorted(predicted, key=_key)  # every line, nothing else
    times = sorted(t for t, d in at_switch if d["type"] == "perk.granted")
    assert all(t >= began * 1000 for t in times)
    spread = (times[-1] - times[0]) / 1000
    assert spread >= len(perks) / rate - 2, f"{len(perks)} perks at {rate}/s came within {spread:.1f} s"


def _key(decision: dict[str, Any]) -> tuple[str, str]:
    return decision["customer_id"], decision["event_id"]
