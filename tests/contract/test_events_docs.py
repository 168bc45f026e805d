"""docs/events.md labels only the currency fields as ISO 4217 codes, and the committed page is current."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import get_args

import pytest

from schemas.docs import events_markdown
from schemas.events import ISO_CURRENCIES, PerkType, RejectionReason

REPO = Path(__file__).resolve().parents[2]
# Where `escalera schemas docs` (engine/cli/contracts.py) takes its examples from.
EXAMPLES = REPO / "schemas" / "examples"


@cache
def page() -> str:
    return events_markdown(EXAMPLES)


def type_column(event_type: str, field: str) -> str:
    """The `type` cell of one field's row in one event's table."""
    section = page().split(f"### `{event_type}`", 1)[1].split("\n### ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith(f"| `{field}` |")]
    assert len(rows) == 1, f"{event_type}.{field}: {len(rows)} rows"
    return rows[0].split(" | ")[1]


@pytest.mark.parametrize(
    ("event_type", "field", "values"),
    [("perk.granted", "perk", get_args(PerkType)), ("event.rejected", "reason", get_args(RejectionReason))],
)
def test_other_enums_are_not_called_iso_4217_and_show_every_value(
    event_type: str, field: str, values: tuple[str, ...]
) -> None:
    shown = type_column(event_type, field)
    assert "ISO 4217" not in shown
    assert shown == ", ".join(f"`{value}`" for value in values)


@pytest.mark.parametrize("event_type", ["purchase.completed", "purchase.refunded"])
def test_the_currency_field_is_iso_4217(event_type: str) -> None:
    assert type_column(event_type, "currency").endswith(f"… ({len(ISO_CURRENCIES)} ISO 4217 codes)")


def test_only_currency_fields_are_labelled_iso_4217() -> None:
    rows = [line for line in page().splitlines() if line.startswith("| `")]
    labelled = [row for row in rows if "ISO 4217" in row.split(" | ")[1]]
    assert labelled, "no field is labelled ISO 4217"
    assert all(line.startswith("| `currency` |") for line in labelled), labelled


def test_the_committed_page_is_what_the_command_writes() -> None:
    committed = (REPO / "docs" / "events.md").read_text()
    assert committed == page(), "run `escalera schemas docs docs/events.md` and commit"
