"""Perk budgets on the real broker: workers count them exactly as `escalera replay` does with the same partition
count (engine/loyalty/budgets.py), keep each partition's ledger in the table's changelog, and take it back after a
restart, a hand-over between workers, or a bootstrap.

A policy with the default perk rules and three budgets small enough for a simulated year to spend them every month:
`enters.buyer` (decided on events), `activity.inactive` (decided by the passage of time: the due sweeps) and a rule of
its own on `volume.high` (decided at midnights, against every partition's spends)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.broker import readback
from engine.broker.partitioner import partition_of
from engine.broker.seed import SeedWriter
from engine.broker.topics import ensure_topics
from engine.loyalty import CustomerState, DecisionEvent, Policy
from engine.loyalty.budgets import Ledgers, Period, share
from engine.loyalty.perk_rules import DEFAULT_PERK_RULES
from engine.loyalty.policy import load_policy
from engine.offline.replay import Replay
from engine.offline.simulation import SimulationSpec, simulate
from schemas.decoder import DecodeLimits
from tests.integration.engine_harness import (
    engine_env,
    metric,
    publish_lines,
    read_all,
    running_workers,
    settings_of,
    start_worker,
    wait_for_states,
)
from tests.integration.test_bootstrap import bootstrap_command
from tests.unit.test_perk_rules import EXAMPLE, december_shop, example_lines

PARTITIONS = 4


def budgeted_policy() -> Policy:
    rules: list[dict[str, Any]] = [
        rule.model_dump(mode="json", by_alias=True, exclude_none=True) for rule in DEFAULT_PERK_RULES
    ]
    for rule in rules:
        if rule["name"] == "enters.buyer":
            rule["budget"] = {"max": 6, "per": "month"}  # shares of 2, 2, 1, 1 over the four partitions
        elif rule["name"] == "activity.inactive":
            rule["budget"] = {"max": 3, "per": "month", "scope": "perk"}
    rules.append(
        {"name": "high_spenders", "trigger": "volume.high", "perks": ["special_offer"],
         "budget": {"max": 2, "per": "month"}}
    )  # fmt: skip
    return Policy.model_validate({"perk_rules": rules})


POLICY = budgeted_policy()
BUDGETS = {rule.name: rule.budget for rule in POLICY.perk_rules if rule.budget is not None}


def env_with_policy(bootstrap: str, tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.to_yaml())
    return engine_env(bootstrap, PARTITIONS, ESCALERA_POLICY_FILE=str(path))


def simulation(customers: int, seed: int) -> list[bytes]:
    return list(simulate(SimulationSpec(customers, 365, seed, duplicates=0.02, malformed=0.01)))


@dataclass(frozen=True)
class Replayed:
    """What `escalera replay` makes of the lines with the policy and the workers' partition count."""

    states: dict[str, CustomerState]
    perk_ids: set[str]
    held_by_budgets: Counter[str]  # perks held back by a budget, by perk


def replayed(lines: list[bytes]) -> Replayed:
    decisions: list[DecisionEvent] = []
    replay = Replay(POLICY, DecodeLimits(currencies=POLICY.currencies), datetime.now(UTC), decisions.append,
                    lambda _: None, PARTITIONS)  # fmt: skip
    for line in lines:
        replay.feed(line)
    replay.finish()
    perk_ids = {d.perk_id for d in decisions if d.type == "perk.granted"}
    suppressed = replay.counts.perks_suppressed
    held = Counter({key.split(":")[0]: n for key, n in suppressed.items() if key.endswith(":budget")})
    return Replayed(replay.states, perk_ids, held)


def published_perks(bootstrap: str, env: dict[str, str]) -> list[dict[str, Any]]:
    return [orjson.loads(v) for _, v in read_all(bootstrap, env["ESCALERA_TOPIC_PERKS"]) if v is not None]


def assert_within_budgets(perks: list[dict[str, Any]]) -> None:
    """No budget granted more than its max in a period, nor a partition more than its share (distinct perk ids: a
    perk published twice after a restart is one grant)."""
    counts: Counter[tuple[str, datetime, int]] = Counter()
    for perk in {p["perk_id"]: p for p in perks if p["type"] == "perk.granted"}.values():
        budget = BUDGETS.get(perk["rule"])
        if budget is not None:
            at = datetime.fromisoformat(perk["occurred_at"])
            partition = partition_of(perk["customer_id"].encode(), PARTITIONS)
            counts[budget.key(perk["rule"], perk["perk"]), budget.period_of(at).start, partition] += 1
    assert counts, "no perk of a budgeted rule was granted"
    totals: Counter[tuple[str, datetime]] = Counter()
    for (key, start, partition), n in counts.items():
        limit = BUDGETS[key.split("/")[0]].max
        assert n <= share(limit, PARTITIONS, partition), (key, start, partition, n)
        totals[key, start] += n
    for (key, start), n in totals.items():
        assert n <= BUDGETS[key.split("/")[0]].max, (key, start, n)


def assert_ledgers_saved(bootstrap: str, env: dict[str, str], perks: list[dict[str, Any]]) -> None:
    """The ledgers in the changelog count, for each period they still keep, the perks the partition granted."""
    saved = readback.budget_ledgers(settings_of(env), quiet_seconds=1.5)
    assert saved, "no budget ledger in the changelog"
    for partition, raw in saved.items():
        data = orjson.loads(raw)
        assert (data["partition"], data["partitions"]) == (partition, PARTITIONS)
        for held in data["periods"]:
            budget = BUDGETS[held["key"].split("/")[0]]
            assert budget is not None
            start = datetime.fromisoformat(held["start"])
            published = {
                p["perk_id"]
                for p in perks
                if p["type"] == "perk.granted"
                and p["rule"] in BUDGETS
                and budget.key(p["rule"], p["perk"]) == held["key"]
                and budget.period_of(datetime.fromisoformat(p["occurred_at"])).start == start
                and partition_of(p["customer_id"].encode(), PARTITIONS) == partition
            }
            assert set(held["ids"]) == published, (partition, held["key"], held["start"])


def test_a_worker_grants_the_replays_perks_within_the_budgets(bootstrap: str, tmp_path: Path) -> None:
    lines = simulation(300, seed=11)
    reference = replayed(lines)
    held = reference.held_by_budgets
    assert set(held) == {"welcome_offer", "win_back_offer", "special_offer"}  # every budget was spent somewhere
    env = env_with_policy(bootstrap, tmp_path)
    with running_workers(env, tmp_path) as (worker,):
        publish_lines(env, lines)  # while the worker runs
        wait_for_states(bootstrap, env, reference.states, 240)
        suppressed = {perk: metric(worker, "escalera_perks_total", perk=perk, outcome="suppressed_budget")
                      for perk in held}  # fmt: skip
    perks = published_perks(bootstrap, env)
    assert {p["perk_id"] for p in perks} == reference.perk_ids
    assert_within_budgets(perks)
    assert suppressed == held  # each perk held back by a budget counted once, under reason budget
    assert_ledgers_saved(bootstrap, env, perks)


def test_a_worker_restarted_on_an_empty_data_directory_takes_its_ledgers_back(bootstrap: str, tmp_path: Path) -> None:
    """A restart half-way through (the table restored from the changelog): a worker that lost its ledgers would
    grant again in a month whose budget was spent before the restart."""
    lines = simulation(300, seed=11)
    half = len(lines) // 2
    env = env_with_policy(bootstrap, tmp_path)
    with running_workers(env, tmp_path / "first"):
        publish_lines(env, lines[:half])
        wait_for_states(bootstrap, env, replayed(lines[:half]).states, 180)
    whole = replayed(lines)
    with running_workers(env, tmp_path / "second"):
        publish_lines(env, lines[half:])
        wait_for_states(bootstrap, env, whole.states, 180)
    perks = published_perks(bootstrap, env)
    assert {p["perk_id"] for p in perks} == whole.perk_ids
    assert_within_budgets(perks)
    assert_ledgers_saved(bootstrap, env, perks)


def test_two_workers_sharing_the_partitions_grant_the_replays_perks(bootstrap: str, tmp_path: Path) -> None:
    """Published while the second worker joins: partitions handed over mid-stream take their ledgers along."""
    lines = simulation(300, seed=12)
    reference = replayed(lines)
    env = env_with_policy(bootstrap, tmp_path)
    with running_workers(env, tmp_path, count=2) as workers:
        publish_lines(env, lines)
        wait_for_states(bootstrap, env, reference.states, 240)
        held = sum(metric(w, "escalera_perks_total", outcome="suppressed_budget") for w in workers)
    perks = published_perks(bootstrap, env)
    assert {p["perk_id"] for p in perks} == reference.perk_ids
    assert_within_budgets(perks)
    assert held >= sum(reference.held_by_budgets.values()) > 0  # (a batch read again after a hand-over counts again)
    assert_ledgers_saved(bootstrap, env, perks)


def test_workers_seeded_by_bootstrap_go_on_counting_the_historys_budgets(bootstrap: str, tmp_path: Path) -> None:
    lines = simulation(300, seed=11)
    half = len(lines) // 2
    history, tail = lines[:half], lines[half:]
    env = env_with_policy(bootstrap, tmp_path)
    (tmp_path / "history.jsonl").write_bytes(b"\n".join(history) + b"\n")
    ensure_topics(settings_of(env))
    seeded = bootstrap_command(env, "history.jsonl", "--out", "seeded", cwd=tmp_path)
    assert seeded.returncode == 0, seeded.stderr[-3000:]
    before = replayed(history).perk_ids
    whole = replayed(history + tail)
    with running_workers(env, tmp_path):
        publish_lines(env, tail)
        wait_for_states(bootstrap, env, whole.states, 180)
    perks = published_perks(bootstrap, env)
    assert {p["perk_id"] for p in perks} == whole.perk_ids - before  # the history's went to the audit files only
    assert_within_budgets(perks + [orjson.loads(line) for line in (tmp_path / "seeded" / "perks.jsonl").open("rb")])


def test_ledgers_kept_for_another_partition_count_stop_the_worker_naming_the_setting(
    bootstrap: str, tmp_path: Path
) -> None:
    env = env_with_policy(bootstrap, tmp_path)
    settings = settings_of(env)
    ensure_topics(settings)
    ledger = Ledgers(8).of_partition(0)  # counted when the topics had 8 partitions
    january = Period(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC))
    ledger.take("someone", "enters.buyer", january, january.start, 6, "perk-1")
    writer = SeedWriter(settings)
    writer.ledger(0, ledger.to_json())
    writer.close()
    worker = start_worker(env, tmp_path)
    try:
        code = worker.process.wait(120)
    except Exception:
        worker.kill()
        raise
    log = worker.log.read_text(errors="replace")
    assert code != 0, log[-3000:]
    said = [orjson.loads(line) for line in log.splitlines() if line.startswith("{") and "escalera.worker" in line]
    [error] = [line["message"] for line in said if line["level"] == "ERROR"]
    assert error.startswith("cannot count perk budgets") and "\n" not in error
    assert "kept for 8 partitions" in error and "ESCALERA_TOPIC_PARTITIONS=4" in error
    assert log.rstrip().endswith(error)  # and the process's exit message, last


@pytest.mark.parametrize("workers", [1, 2])
def test_the_issues_example_in_live_workers_equals_the_replay(bootstrap: str, tmp_path: Path, workers: int) -> None:
    """Issue 19's "done when": a marketer edits only the policy file to give priority_service to final customers
    entering habitual in December, at most 100 a month; one worker or two (published while they run) grant exactly
    what `escalera replay` grants, and count what they hold back by window, condition and budget as it does."""
    path = tmp_path / "policy.yaml"
    path.write_text(EXAMPLE)  # the file as a marketer writes it (tests/unit/test_perk_rules.py checks the replay)
    policy = load_policy(path)
    customers = december_shop()
    lines = example_lines(customers)
    decisions: list[DecisionEvent] = []
    replay = Replay(policy, DecodeLimits(currencies=policy.currencies), datetime.now(UTC), decisions.append,
                    lambda _: None, 8)  # fmt: skip
    for line in lines:
        replay.feed(line)
    replay.finish()
    expected = {d.perk_id for d in decisions if d.type == "perk.granted"}
    held = Counter({key: n for key, n in replay.counts.perks_suppressed.items() if key.startswith("priority_service")})
    assert sum(d.type == "perk.granted" and d.perk == "priority_service" for d in decisions) == 100
    assert set(held) == {"priority_service:budget", "priority_service:condition", "priority_service:window"}
    env = engine_env(bootstrap, 8, ESCALERA_POLICY_FILE=str(path))
    with running_workers(env, tmp_path, count=workers) as running:
        publish_lines(env, lines)
        wait_for_states(bootstrap, env, replay.states, 240)
        counted = Counter({f"priority_service:{reason}": sum(
            metric(w, "escalera_perks_total", perk="priority_service", outcome=f"suppressed_{reason}")
            for w in running) for reason in ("budget", "condition", "window")})  # fmt: skip
    perks = published_perks(bootstrap, env)
    assert {p["perk_id"] for p in perks if p["type"] == "perk.granted"} == expected
    priority = [p for p in perks if p["type"] == "perk.granted" and p["perk"] == "priority_service"]
    assert len({p["perk_id"] for p in priority}) == 100
    assert {p["rule"] for p in priority} == {"december_priority"}
    if workers == 1:  # (two workers may read a batch again after a hand-over, and count it again)
        assert counted == held
    else:
        assert all(counted[key] >= n for key, n in held.items())
