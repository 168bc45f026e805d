"""`escalera whatif`: its outputs are exactly the difference of two independent `escalera replay` runs."""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from engine.cli import app, main
from engine.loyalty import DEFAULT_POLICY, Policy, PolicyError, load_policy
from schemas.events import STEPS

pytestmark = pytest.mark.unit

# The view's dimensions (each compared); any other field of customers.jsonl is not one (checked below).
DIMENSIONS = ("step", "activity", "frequency", "volume", "satisfaction", "influence", "relationship", "kind",
              "permanent", "risk")  # fmt: skip
NOT_DIMENSIONS = {"customer_id", "as_of", "figures", "recent_decisions"}
OUTPUTS = ("moves.jsonl", "matrix.json", "perks.json", "summary.md", "whatif.png")
AS_OF = "2026-09-30T00:00:00Z"  # after the shop's last event: some customers lapse, and are at risk or inactive

# The current policy prices one perk; the candidate changes one threshold (habitual at 3 purchases, not 4) and
# prices two more: prices of 0.10 and 0.20 go wrong in binary floating point (0.1 * 3 != 0.3).
CURRENT = "perk_costs:\n  welcome_offer: '0.10'\n"
CANDIDATE = (
    "ladder:\n  habitual_min_purchases: 3\n"
    "perk_costs:\n  welcome_offer: '0.10'\n  priority_service: '0.20'\n  special_offer: 0.30\n"
)


@dataclass
class Runs:
    folder: Path
    history: Path
    current: Path
    candidate: Path


def invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """A simulated shop of 400 customers; `escalera replay` under each policy; `escalera whatif` twice."""
    folder = tmp_path_factory.mktemp("whatif")
    history, current, candidate = folder / "shop.jsonl", folder / "current.yaml", folder / "candidate.yaml"
    current.write_text(CURRENT)
    candidate.write_text(CANDIDATE)
    invoke("simulate", "--customers", "400", "--days", "365", "--seed", "2", "--duplicates", "0.01",
           "--malformed", "0.01", "--out", str(history))  # fmt: skip
    for name, policy in (("a", current), ("b", candidate)):
        invoke("replay", str(history), "--policy", str(policy), "--as-of", AS_OF, "--out", str(folder / name))
    for name in ("w1", "w2"):
        invoke("whatif", str(history), "--policy", str(current), "--candidate", str(candidate),
               "--as-of", AS_OF, "--out", str(folder / name))  # fmt: skip
    return Runs(folder, history, current, candidate)


def customers(folder: Path) -> dict[str, dict[str, Any]]:
    lines = (folder / "customers.jsonl").read_text().splitlines()
    return {c["customer_id"]: c for c in map(json.loads, lines)}


def summary(folder: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((folder / "summary.json").read_text())
    return result


def test_every_move_is_a_difference_between_the_two_replays_and_none_is_missing(runs: Runs) -> None:
    before, after = customers(runs.folder / "a"), customers(runs.folder / "b")
    assert before.keys() == after.keys()
    for customer in before.values():
        assert customer.keys() - NOT_DIMENSIONS == set(DIMENSIONS)  # a new dimension in the view: compare it too
    expected = [
        {"customer_id": cid, "dimension": d, "from": before[cid][d], "to": after[cid][d]}
        for cid in sorted(before)
        for d in DIMENSIONS
        if before[cid][d] != after[cid][d]
    ]
    moves = [json.loads(line) for line in (runs.folder / "w1" / "moves.jsonl").read_text().splitlines()]
    assert any(move["dimension"] == "step" for move in expected)  # the threshold moved someone's step
    assert moves == expected  # every line, in order (customer, then the view's order), and none missing


def test_the_matrix_counts_every_customer_by_step_under_each_policy(runs: Runs) -> None:
    before, after = customers(runs.folder / "a"), customers(runs.folder / "b")
    report = json.loads((runs.folder / "w1" / "matrix.json").read_text())
    matrix = report["matrix"]
    assert list(matrix) == list(STEPS) and all(list(row) == list(STEPS) for row in matrix.values())
    pairs = Counter((before[cid]["step"], after[cid]["step"]) for cid in before)
    assert {(a, b): n for a, row in matrix.items() for b, n in row.items() if n} == dict(pairs)
    assert sum(map(sum, (row.values() for row in matrix.values()))) == report["customers"] == len(before)
    assert {a: sum(row.values()) for a, row in matrix.items()} == summary(runs.folder / "a")["steps"]
    assert {b: sum(matrix[a][b] for a in STEPS) for b in STEPS} == summary(runs.folder / "b")["steps"]
    assert report["as_of"] == summary(runs.folder / "a")["as_of"]


def test_the_perk_counts_are_the_two_replays_summaries(runs: Runs) -> None:
    perks = json.loads((runs.folder / "w1" / "perks.json").read_text())["perks"]
    sides = {"current": summary(runs.folder / "a"), "candidate": summary(runs.folder / "b")}
    for side, report in sides.items():
        granted = {perk: e[side]["granted"] for perk, e in perks.items() if e[side]["granted"]}
        assert granted == report["perks_granted"]
        by_reason = {perk: e[side]["held_back_by_reason"] for perk, e in perks.items()}
        held = {f"{perk}:{reason}": n for perk, reasons in by_reason.items() for reason, n in reasons.items()}
        assert held == report["perks_suppressed"]
        assert all(e[side]["held_back"] == sum(e[side]["held_back_by_reason"].values()) for e in perks.values())
        revoked = {perk: e[side]["revoked"] for perk, e in perks.items() if e[side]["revoked"]}
        assert revoked == report.get("perks_revoked", {})
    assert sides["current"]["perks_granted"] != sides["candidate"]["perks_granted"]
    for perk, e in perks.items():
        for count in ("granted", "held_back", "revoked"):
            assert e["difference"][count] == e["candidate"][count] - e["current"][count], perk


def test_costs_are_exact_decimals_and_a_price_in_one_file_prices_both_sides(runs: Runs) -> None:
    report = json.loads((runs.folder / "w1" / "perks.json").read_text())
    prices = {"welcome_offer": Decimal("0.10"), "priority_service": Decimal("0.20"), "special_offer": Decimal("0.3")}
    granted = {"current": summary(runs.folder / "a")["perks_granted"],
               "candidate": summary(runs.folder / "b")["perks_granted"]}  # fmt: skip
    assert report["currency"] == DEFAULT_POLICY.currency.base
    totals = {}
    for side in ("current", "candidate"):
        for perk, price in prices.items():  # (the current policy has no price for two of them: the candidate's)
            entry = report["perks"][perk][side]
            assert entry["unit_cost"] == str(price)
            assert entry["cost"] == str(price * granted[side][perk]), (side, perk)
        assert all("cost" not in e[side] for perk, e in report["perks"].items() if perk not in prices)
        totals[side] = sum((price * granted[side][perk] for perk, price in prices.items()), Decimal(0))
        assert report["total"][side]["cost"] == str(totals[side])
    assert report["total"]["difference"]["cost"] == str(totals["candidate"] - totals["current"])
    summary_md = (runs.folder / "w1" / "summary.md").read_text()
    assert f"{totals['current']} EUR now, {totals['candidate']} EUR with the candidate" in summary_md


def test_the_summary_tells_how_many_move_and_where(runs: Runs) -> None:
    before, after = customers(runs.folder / "a"), customers(runs.folder / "b")
    moved = Counter((before[c]["step"], after[c]["step"]) for c in before if before[c]["step"] != after[c]["step"])
    text = (runs.folder / "w1" / "summary.md").read_text()
    assert f"{moved.total()} customers ({moved.total() / len(before):.1%}) end on another step" in text
    (a, b), n = moved.most_common(1)[0]
    assert f"| {a} | {b} | {n} |" in text
    assert f"- step: {moved.total()} customers" in text
    assert "candidate.yaml" in text and str(runs.folder) not in text  # file names, not the machine's paths


def test_a_rerun_writes_the_same_bytes(runs: Runs) -> None:
    for name in OUTPUTS:
        first, second = (runs.folder / "w1" / name).read_bytes(), (runs.folder / "w2" / name).read_bytes()
        assert first == second and first, name
    assert (runs.folder / "w1" / "whatif.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_same_policy_twice_moves_nobody_and_defaults_to_the_last_event(runs: Runs) -> None:
    out = runs.folder / "same"
    invoke("whatif", str(runs.history), "--policy", str(runs.current), "--candidate", str(runs.current),
           "--out", str(out))  # fmt: skip
    assert (out / "moves.jsonl").read_bytes() == b""
    matrix = json.loads((out / "matrix.json").read_text())
    assert all(n == 0 for a, row in matrix["matrix"].items() for b, n in row.items() if a != b)
    invoke("replay", str(runs.history), "--policy", str(runs.current), "--out", str(runs.folder / "c"))
    assert matrix["as_of"] == summary(runs.folder / "c")["as_of"] < AS_OF
    perks = json.loads((out / "perks.json").read_text())
    assert all(Decimal(v) == 0 for e in perks["perks"].values() for v in e["difference"].values())


def run_main(argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> str:
    """The installed command's way: `main` turns an EscaleraError into one line on stderr and exit code 2."""
    monkeypatch.setattr(sys, "argv", ["escalera", *argv])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def test_a_missing_candidate_file_is_one_line_naming_it(
    runs: Runs, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = runs.folder / "no-such-candidate.yaml"
    out = runs.folder / "missing"
    err = run_main(["whatif", str(runs.history), "--candidate", str(missing), "--out", str(out)], monkeypatch, capsys)
    assert err.startswith(f"escalera: cannot read the policy file {missing}")
    assert not out.exists()


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("ladder:\n  habitual_min_purchase: 3\n", "ladder.habitual_min_purchase"),
        ("perk_costs:\n  free_lunch: '1.00'\n", "perk_costs.free_lunch"),
        ("perk_costs:\n  welcome_offer: '-1'\n", "perk_costs.welcome_offer"),
    ],
)
def test_a_bad_key_in_the_candidate_is_the_loaders_one_line(
    text: str, key: str, runs: Runs, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = runs.folder / "bad.yaml"
    bad.write_text(text)
    err = run_main(["whatif", str(runs.history), "--candidate", str(bad), "--out", str(runs.folder / "bad")],
                   monkeypatch, capsys)  # fmt: skip
    assert err.startswith(f"escalera: invalid policy file {bad}: {key}")
    with pytest.raises(PolicyError, match=re.escape(key)):  # the same words as the loader's own
        load_policy(bad)


def test_perk_costs_are_optional_and_no_part_of_the_version() -> None:
    """Prices are for reports: a policy that only adds them decides the same, so it keeps the version (the
    workers' policy switch re-evaluates nobody for them; bootstrap accepts the file)."""
    assert DEFAULT_POLICY.perk_costs == {}
    assert Policy.model_validate({"perk_costs": {}}).version == DEFAULT_POLICY.version
    priced = Policy.model_validate({"perk_costs": {"welcome_offer": "0.10"}})
    assert priced.perk_costs == {"welcome_offer": Decimal("0.10")}
    assert isinstance(priced.perk_costs["welcome_offer"], Decimal)
    assert priced.version == DEFAULT_POLICY.version
