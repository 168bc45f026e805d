"""The offline replay: deterministic, resumable, and its outputs say what the simulation put in."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.loyalty import DEFAULT_POLICY, DecisionEvent, volume
from engine.offline.replay import Replay
from engine.offline.simulation import SimulationSpec, simulate
from schemas.construct import flat_json
from schemas.decoder import DecodeLimits

NOW = datetime(2026, 7, 1, tzinfo=UTC)
LIMITS = DecodeLimits(currencies=DEFAULT_POLICY.currencies)


@pytest.fixture(scope="module")
def lines() -> list[bytes]:
    return list(simulate(SimulationSpec(customers=150, days=400, seed=3, duplicates=0.02, malformed=0.02)))


def test_the_simulation_is_deterministic_for_a_seed() -> None:
    spec = SimulationSpec(customers=40, days=100, seed=9, duplicates=0.05, malformed=0.05)
    assert list(simulate(spec)) == list(simulate(spec))
    assert list(simulate(spec)) != list(simulate(SimulationSpec(customers=40, days=100, seed=10)))


def test_simulate_then_replay_from_the_command_line(tmp_path: Path) -> None:
    runner = CliRunner()
    events = tmp_path / "events.jsonl"
    made = runner.invoke(app, ["simulate", "--customers", "200", "--days", "365", "--seed", "5", "--out", str(events),
                               "--duplicates", "0.02", "--malformed", "0.02"])  # fmt: skip
    assert made.exit_code == 0, made.output
    lines = events.read_bytes().splitlines()
    assert len(lines) > 2000

    first = runner.invoke(app, ["replay", str(events), "--out", str(tmp_path / "a")])
    second = runner.invoke(app, ["replay", str(events), "--out", str(tmp_path / "b")])
    assert first.exit_code == 0 and second.exit_code == 0, first.output
    files = ["customers.jsonl", "perks.jsonl", "transitions.jsonl", "rejected.jsonl", "summary.json", "funnel.png"]
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name

    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    customers = [json.loads(line) for line in (tmp_path / "a" / "customers.jsonl").read_text().splitlines()]
    assert sum(summary["steps"].values()) == summary["customers"] == len(customers)
    # Every customer is reported as of the end of the replay, not as of their own last event.
    assert {c["as_of"] for c in customers} == {summary["as_of"]}
    for dimension in ("activity", "satisfaction", "relationship", "volume"):
        assert sum(summary[dimension].values()) == len(customers)
    rejected = (tmp_path / "a" / "rejected.jsonl").read_text().splitlines()
    assert sum(summary["rejections"].values()) == len(rejected) > 0
    valid = summary["events"]
    assert valid + len(rejected) == len(lines) == summary["lines"]
    assert summary["duplicates_ignored"] > 0
    perks = [json.loads(line) for line in (tmp_path / "a" / "perks.jsonl").read_text().splitlines()]
    assert len(perks) == sum(summary["perks_granted"].values())
    assert len({p["perk_id"] for p in perks}) == len(perks)
    assert all(p["explanation"] and p["evidence"] for p in perks)
    assert summary["complaints"]["unhappy_customers_per_formal_complaint"] == "166.7"
    assert (tmp_path / "a" / "funnel.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Archetypes end where they should: some customers reached every step.
    assert all(summary["steps"][step] > 0 for step in ("potential", "buyer", "occasional", "habitual"))


def test_policy_show_prints_the_defaults_and_an_invalid_file_names_its_key(tmp_path: Path) -> None:
    runner = CliRunner()
    shown = runner.invoke(app, ["policy", "show"])
    assert shown.exit_code == 0
    assert f"version {DEFAULT_POLICY.version}" in shown.stdout
    assert "habitual_max_median_gap_days: 60" in shown.stdout and "negative_weight: 12" in shown.stdout
    bad = tmp_path / "policy.yaml"
    bad.write_text("ladder:\n  habitual_min_purchases: 0\n")
    result = runner.invoke(app, ["policy", "show", "--policy", str(bad)])
    assert result.exit_code != 0
    assert "ladder.habitual_min_purchases" in str(result.exception)


def test_every_decision_the_core_builds_is_valid_by_the_contract_and_written_as_pydantic_writes_it(
    lines: list[bytes],
) -> None:
    decisions: list[DecisionEvent] = []
    replay = Replay(DEFAULT_POLICY, LIMITS, NOW, decisions.append, lambda _: None)
    for line in lines:
        replay.feed(line)
    replay.finish()
    assert {d.type for d in decisions} == {"perk.granted", "customer.step_changed", "customer.classification_changed"}
    for decision in decisions:  # built without validation (schemas.construct.trusted) for speed
        validated = type(decision).model_validate(decision.__dict__)
        assert list(validated.__dict__.items()) == list(decision.__dict__.items())
        assert flat_json(decision) == decision.model_dump_json().encode()


class _Forgetful(dict[str, Any]):
    """Notes of evaluated window spends that keep none: every midnight sums the window again."""

    def __setitem__(self, key: str, value: Any) -> None:
        pass


@pytest.mark.parametrize("late", [False, True])
def test_a_midnight_taking_the_spend_an_evaluation_found_decides_as_summing_the_window_again(
    lines: list[bytes], late: bool
) -> None:
    """The replay notes the window spend each evaluation found and a midnight takes it, instead of summing the window
    again, when it still holds (`SpendBook.settle`): the same spends and decisions as summing every time, also with
    events arriving late."""
    if late:  # every tenth line moved thirty lines on: events older than some before them
        lines = list(lines)
        for index in range(0, len(lines) - 40, 10):
            lines.insert(index + 30, lines.pop(index))
    results, sums = [], []
    for forgetful in (False, True):
        decisions: list[DecisionEvent] = []
        replay = Replay(DEFAULT_POLICY, LIMITS, NOW, decisions.append, lambda _: None)
        if forgetful:
            replay.book.evaluated = _Forgetful()
        with patch.object(volume, "window_spend", wraps=volume.window_spend) as summed:
            for line in lines:
                replay.feed(line)
            replay.finish()
        results.append(([flat_json(decision) for decision in decisions], replay.book.spends))
        sums.append(summed.call_count)
    assert results[0] == results[1] and results[0][0]
    assert sums[0] < sums[1] / 2  # most midnights took the evaluated spend
