"""Audiences (issue 20): the filter over every dimension of the customer view, its errors, the cursor paging over the
workers' merged pages, the CSV and JSON lines output, and `escalera audience --from-replay` against the replay's own
customers.jsonl filtered by hand."""

from __future__ import annotations

import csv
import io
import itertools
import subprocess
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from engine.broker.partitioner import partition_of
from engine.cli import app
from engine.cli.audience import COLUMNS, FIGURES, write_audience
from engine.loyalty import DEFAULT_POLICY, CustomerState
from engine.loyalty.audience import (
    FILTERS,
    AudienceError,
    decode_cursor,
    dimensions,
    encode_cursor,
    merge_pages,
    page_of,
    parse_audience,
    parse_limit,
    select,
)
from engine.loyalty.view import view
from engine.offline.replay import Replay
from engine.offline.simulation import SimulationSpec, simulate
from schemas.decoder import DecodeLimits

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


@cache
def population() -> dict[str, CustomerState]:
    """A simulated shop's customers as the replay leaves them: every step and class occurs among them."""
    replay = Replay(DEFAULT_POLICY, DecodeLimits(currencies=DEFAULT_POLICY.currencies), datetime.now(UTC),
                    lambda _: None, lambda _: None)  # fmt: skip
    for line in simulate(SimulationSpec(400, 365, 11)):
        replay.feed(line)
    replay.finish()
    states = dict(replay.states)
    # A year of simulated shop has no permanent customer, and may miss a rare value: one customer each, made so.
    model = next(iter(states.values()))
    for dimension, values in FILTERS.items():
        for value in values:
            if not any(str(dimensions(s)[dimension]).lower() == value for s in states.values()):
                made = model.copy()
                made.customer_id = f"made-{dimension}-{value}"
                setting = value if dimension != "permanent" else value == "true"
                setattr(made, dimension, None if (dimension, value) == ("step", "possible") else setting)
                states[made.customer_id] = made
    return states


@cache
def views() -> list[dict[str, Any]]:
    return [orjson.loads(orjson.dumps(view(state, DEFAULT_POLICY))) for state in population().values()]


def test_the_filters_are_the_views_dimensions_under_their_names() -> None:
    sample = views()[0]
    assert set(FILTERS) <= set(sample)
    assert "risk" in FILTERS and "permanent" in FILTERS  # as the view calls them: not "at_risk", "tenure"
    for state in population().values():
        shown = view(state, DEFAULT_POLICY)
        assert dimensions(state) == {name: shown[name] for name in FILTERS}, state.customer_id


@pytest.mark.parametrize("dimension", list(FILTERS))
def test_each_dimension_filters_on_each_of_its_values(dimension: str) -> None:
    everyone = views()
    for value in FILTERS[dimension]:
        audience = parse_audience({dimension: value})
        expected = {c["customer_id"] for c in everyone if str(c[dimension]).lower() == value}
        assert {c["customer_id"] for c in select(everyone, audience)} == expected, value
        states = {s.customer_id for s in population().values() if audience.admits_state(s)}
        assert states == expected and expected, value  # (every value is someone's: the filter does select)


def test_several_values_mean_any_and_several_dimensions_mean_all() -> None:
    everyone = views()
    either = parse_audience({"step": "habitual,occasional"})
    assert {c["customer_id"] for c in select(everyone, either)} == {
        c["customer_id"] for c in everyone if c["step"] in ("habitual", "occasional")
    }
    # the same as one option given twice (a query string's step=habitual&step=occasional)
    assert parse_audience({"step": ["habitual", "occasional"]}) == either
    both = parse_audience({"step": "habitual,occasional", "activity": "active"})
    chosen = {c["customer_id"] for c in select(everyone, both)}
    assert chosen == {c["customer_id"] for c in everyone
                      if c["step"] in ("habitual", "occasional") and c["activity"] == "active"}  # fmt: skip
    assert chosen and chosen < {c["customer_id"] for c in select(everyone, either)}
    assert select(everyone, parse_audience({})) == sorted(everyone, key=lambda c: c["customer_id"])


def test_an_unknown_value_fails_in_one_line_naming_the_option_and_the_known_values() -> None:
    with pytest.raises(AudienceError) as caught:
        parse_audience({"relationship": "mercenary,loyal"})
    message = str(caught.value)
    assert "\n" not in message and message.startswith("--relationship: unknown value 'loyal'")
    assert "(known: unknown, apostle, mercenary, hostage, enemy)" in message
    with pytest.raises(AudienceError, match=r"^step: unknown value 'vip' \(known: possible, potential, buyer"):
        parse_audience({"step": "vip"}, prefix="")
    with pytest.raises(AudienceError, match=r"^colour: not a filter \(known: step, activity, .*risk\)$"):
        parse_audience({"colour": "red"}, prefix="")
    with pytest.raises(AudienceError, match=r"^--permanent: give one or more values.*known: true, false"):
        parse_audience({"permanent": ""})
    with pytest.raises(AudienceError, match=r"^--risk: unknown value 'yes'.*known: none, at_risk"):
        parse_audience({"risk": "yes"})


def test_limits_and_cursors_are_checked() -> None:
    assert parse_limit(None) == 100 and parse_limit("7") == 7
    for bad in ("0", "1001", "-1", "ten"):
        with pytest.raises(AudienceError, match=r"^limit: "):
            parse_limit(bad)
    for customer_id in ("c-1", "ü/+=?&", "x" * 128):
        token = encode_cursor(customer_id)
        assert decode_cursor(token) == customer_id and customer_id not in token
    assert decode_cursor(None) is None
    for bad in ("c-1", "!!", encode_cursor("c-1")[:-3] + "***"):
        with pytest.raises(AudienceError, match=r"^cursor: "):
            decode_cursor(bad)


def paged(shares: list[list[int]], limit: int, audience_filter: Mapping[str, str]) -> list[list[str]]:
    """Page through an audience as the workers' API does: each worker answers for its partitions after the cursor,
    the pages are merged; returns the ids of every page."""
    chosen = select(views(), parse_audience(audience_filter))
    workers = [[c for c in chosen if partition_of(c["customer_id"].encode(), 4) in mine] for mine in shares]
    pages, after = [], None
    for _ in range(10_000):
        answers = []
        for mine in workers:
            answers.append(page_of((c for c in mine if after is None or c["customer_id"] > after), limit))
        merged, following = merge_pages(answers, limit)
        assert len(merged) <= limit
        pages.append([c["customer_id"] for c in merged])
        if following is None:
            return pages
        after = decode_cursor(following)
    raise AssertionError("paging never ended")


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 50, 1000])
@pytest.mark.parametrize("shares", [[[0, 1, 2, 3]], [[0, 2], [1, 3]], [[0], [1, 2], [3]], [[3], [], [0, 1, 2]]])
def test_pages_concatenated_are_the_whole_audience_once_in_id_order(shares: list[list[int]], limit: int) -> None:
    for audience in ({}, {"step": "buyer,occasional"}, {"relationship": "mercenary"}):
        pages = paged(shares, limit, audience)
        ids = list(itertools.chain.from_iterable(pages))
        whole = [c["customer_id"] for c in select(views(), parse_audience(audience))]
        assert ids == whole and len(set(ids)) == len(ids)  # all of them, none twice, by id
        assert all(len(page) == limit for page in pages[:-1]) and pages[-1]  # full pages, the last not empty
        assert paged(shares, limit, audience) == pages  # stable
    assert len(pages) > 1 or limit >= len(whole)


def test_a_customer_answered_twice_is_kept_once() -> None:
    one = {"customer_id": "c-1"}
    merged, following = merge_pages([page_of([one], 5), page_of([one, {"customer_id": "c-2"}], 5)], 5)
    assert [c["customer_id"] for c in merged] == ["c-1", "c-2"] and following is None


def test_json_lines_hold_the_views_and_csv_the_dimensions_and_figures() -> None:
    chosen = select(views(), parse_audience({"step": "habitual,exclusive,propagandist"}))
    assert len(chosen) > 3
    lines = io.StringIO()
    write_audience(chosen, "jsonl", lines)
    assert [orjson.loads(line) for line in lines.getvalue().splitlines()] == chosen
    table = io.StringIO()
    write_audience(chosen, "csv", table)
    rows = list(csv.DictReader(io.StringIO(table.getvalue())))
    assert tuple(rows[0]) == COLUMNS and len(rows) == len(chosen)
    for row, customer in zip(rows, chosen, strict=True):
        assert row["customer_id"] == customer["customer_id"] and row["as_of"] == customer["as_of"]
        for name in FILTERS:
            assert row[name] == (str(customer[name]).lower() if name == "permanent" else customer[name])
        for name in FIGURES:
            value = customer["figures"][name]
            assert row[name] == ("" if value is None else str(value))
    assert "recent_decisions" not in table.getvalue()


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("replayed")
    runner = CliRunner()
    made = runner.invoke(app, ["simulate", "--customers", "300", "--days", "365", "--seed", "4",
                               "--out", str(folder / "events.jsonl")], env={})  # fmt: skip
    assert made.exit_code == 0, made.output
    done = runner.invoke(app, ["replay", str(folder / "events.jsonl"), "--out", str(folder / "out")], env={})
    assert done.exit_code == 0, done.output
    return folder / "out"


def by_hand(folder: Path, **wanted: set[str]) -> list[dict[str, Any]]:
    """The replay's customers.jsonl filtered without the audience module."""
    found = []
    for line in (folder / "customers.jsonl").read_bytes().splitlines():
        customer = orjson.loads(line)
        shown = {k: (("true" if v else "false") if isinstance(v, bool) else v) for k, v in customer.items()}
        if all(shown[name] in values for name, values in wanted.items()):
            found.append(customer)
    return sorted(found, key=lambda c: c["customer_id"])


@pytest.mark.parametrize(
    ("options", "wanted"),
    [
        (["--step", "habitual,occasional", "--relationship", "mercenary"],
         {"step": {"habitual", "occasional"}, "relationship": {"mercenary"}}),
        (["--activity", "inactive"], {"activity": {"inactive"}}),
        (["--satisfaction", "dissatisfied,delighted", "--kind", "final,internal", "--permanent", "false"],
         {"satisfaction": {"dissatisfied", "delighted"}, "kind": {"final", "internal"}, "permanent": {"false"}}),
        (["--volume", "high", "--risk", "none"], {"volume": {"high"}, "risk": {"none"}}),
    ],
)  # fmt: skip
def test_the_command_from_a_replay_equals_filtering_its_file_by_hand(
    replayed: Path, tmp_path: Path, options: list[str], wanted: dict[str, set[str]]
) -> None:
    expected = by_hand(replayed, **wanted)
    assert expected, "each case selects someone"
    result = CliRunner().invoke(app, ["audience", "--from-replay", str(replayed), *options], env={})
    assert result.exit_code == 0, result.output
    assert [orjson.loads(line) for line in result.stdout.splitlines()] == expected
    assert f"{len(expected)} customers matched" in result.stderr
    out = tmp_path / "audience.csv"
    result = CliRunner().invoke(
        app, ["audience", "--from-replay", str(replayed / "customers.jsonl"), *options, "--format", "csv",
              "--out", str(out)], env={})  # fmt: skip
    assert result.exit_code == 0, result.output
    assert [row["customer_id"] for row in csv.DictReader(out.open())] == [c["customer_id"] for c in expected]


@pytest.mark.parametrize(
    ("options", "said"),
    [
        (["--step", "vip"], "escalera: --step: unknown value 'vip' (known: possible, potential, buyer, occasional, "
                            "habitual, exclusive, propagandist)"),
        (["--format", "xml"], "escalera: --format: unknown value 'xml' (known: jsonl, csv)"),
        (["--from-replay", "no-such-file.jsonl"], "escalera: cannot read no-such-file.jsonl:"),
    ],
)  # fmt: skip
def test_a_wrong_option_ends_the_command_in_one_line(tmp_path: Path, options: list[str], said: str) -> None:
    done = subprocess.run([sys.executable, "-m", "engine.cli", "audience", *options], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60, env={"PATH": "", "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith(said) and len(done.stderr.strip().splitlines()) == 1, done.stderr
