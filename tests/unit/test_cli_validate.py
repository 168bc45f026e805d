"""`escalera validate` reports exactly the broken lines, with their reasons, and exits 1 if there are any."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.cli.contracts import bounded_lines

pytestmark = pytest.mark.unit

EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"
INBOUND = [
    "customer.registered",
    "customer.interest_shown",
    "purchase.completed",
    "purchase.refunded",
    "feedback.received",
    "customer.erasure_requested",
]


def example(event_type: str, **changes: object) -> bytes:
    event = {**json.loads((EXAMPLES / f"{event_type}.json").read_text()), **changes}
    return orjson.dumps(event)


def run(path: Path, *options: str) -> tuple[int, list[dict[str, object]], str]:
    result = CliRunner().invoke(app, ["validate", str(path), *options], env={})
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return result.exit_code, lines, result.stderr


def test_a_valid_file_exits_0_and_prints_no_rejection(tmp_path: Path) -> None:
    path = tmp_path / "good.jsonl"
    path.write_bytes(b"\n".join(example(t) for t in INBOUND) + b"\n")
    code, lines, err = run(path)
    assert (code, lines) == (0, [])
    assert "6 lines: 6 valid, 0 rejected" in err


def test_a_mixed_file_reports_exactly_the_broken_lines(tmp_path: Path) -> None:
    rows = [
        example("purchase.completed"),  # 1 ok
        example("purchase.completed", amount="-3"),  # 2
        b"{not json",  # 3
        example("feedback.received", nps=12),  # 4
        example("customer.registered"),  # 5 ok
        example("purchase.completed", currency="XYZ"),  # 6
        b"",  # 7
        example("customer.registered", type="customer.deleted"),  # 8
        example("purchase.refunded", schema_version=3),  # 9
        b"\xff\xfe",  # 10
        example("feedback.received"),  # 11 ok
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(rows) + b"\n")
    code, lines, err = run(path)
    assert code == 1
    assert [(row["line"], row["reason"]) for row in lines] == [
        (2, "invalid_field"),
        (3, "invalid_json"),
        (4, "invalid_field"),
        (6, "unknown_currency"),
        (7, "invalid_json"),
        (8, "unknown_type"),
        (9, "unsupported_version"),
        (10, "invalid_utf8"),
    ]
    assert "amount" in str(lines[0]["message"]) and "nps" in str(lines[2]["message"])
    assert "11 lines: 3 valid, 8 rejected" in err


def test_currencies_can_be_restricted(tmp_path: Path) -> None:
    path = tmp_path / "usd.jsonl"
    path.write_bytes(example("purchase.completed", currency="USD") + b"\n")
    assert run(path)[0] == 0
    code, lines, _ = run(path, "--currencies", "EUR,GBP")
    assert code == 1 and lines[0]["reason"] == "unknown_currency"


def test_by_default_only_currencies_with_a_policy_rate_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "jpy.jsonl"
    path.write_bytes(example("purchase.completed", currency="JPY") + b"\n")  # ISO 4217, but no rate
    code, lines, _ = run(path)
    assert code == 1 and lines[0]["reason"] == "unknown_currency"
    assert "no exchange rate in the policy" in str(lines[0]["message"])
    policy = tmp_path / "policy.yaml"
    policy.write_text("currency:\n  base: EUR\n  rates: {EUR: 1, JPY: 0.0061}\n")
    result = CliRunner().invoke(app, ["validate", str(path)], env={"ESCALERA_POLICY_FILE": str(policy)})
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("variable", ["ESCALERA_MAX_EVENT_BYTES"])
def test_the_size_limit_comes_from_the_settings(tmp_path: Path, variable: str) -> None:
    path = tmp_path / "big.jsonl"
    path.write_bytes(example("purchase.completed", category="x" * 100) + b"\n")
    result = CliRunner().invoke(app, ["validate", str(path)], env={variable: "256"})
    assert result.exit_code == 1
    assert json.loads(result.stdout.splitlines()[0])["reason"] == "too_large"


def test_an_oversized_line_reports_its_true_size_and_later_lines_keep_their_numbers(tmp_path: Path) -> None:
    path = tmp_path / "huge.jsonl"
    huge = example("purchase.completed", category="x" * 300_000)
    path.write_bytes(example("customer.registered") + b"\r\n" + huge + b"\r\n" + b"[]")  # no final newline
    code, lines, err = run(path)
    assert code == 1
    assert lines == [
        {"line": 2, "reason": "too_large", "message": f"payload is {len(huge)} bytes, more than the limit of 65536"},
        {"line": 3, "reason": "not_an_object", "message": "payload must be a JSON object"},
    ]
    assert "3 lines: 1 valid, 2 rejected" in err


@pytest.mark.parametrize("ending", [b"\n", b"\r\n"])
def test_lines_are_read_bounded_whatever_their_length_and_ending(tmp_path: Path, ending: bytes) -> None:
    limit = 256
    rows = [b"a" * limit, b"b" * (limit + 1), b"", b"c" * (limit - 1), b"d" * 100_000, b"e" * (limit + 2)]
    path = tmp_path / "lines.jsonl"
    path.write_bytes(ending.join(rows))
    with path.open("rb") as handle:
        read = list(bounded_lines(handle, limit))
    assert [size for _, size in read] == [len(row) for row in rows]
    assert [line for line, _ in read] == [row[: limit + 1] for row in rows]


def test_schemas_export_writes_the_files(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["schemas", "export", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "purchase.completed.json").is_file()
    assert "wrote 13 JSON Schema files" in result.stdout
