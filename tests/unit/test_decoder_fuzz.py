"""Fuzzing: the decoder never raises, and never accepts an invalid event."""

from __future__ import annotations

import json
import unicodedata
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.decoder import DecodeLimits, Rejection, decode
from schemas.events import (
    ISO_CURRENCIES,
    FeedbackReceived,
    PurchaseCompleted,
    PurchaseRefunded,
    inbound_adapter,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 6, 1, tzinfo=UTC)
LIMITS = DecodeLimits(max_bytes=64 * 1024, max_skew=timedelta(minutes=5))
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ids = st.text(st.characters(codec="utf-8", categories=["L", "N", "P"]), min_size=1, max_size=40)
timestamps = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2026, 5, 31), timezones=st.just(UTC)).map(
    lambda moment: moment.isoformat()
)
amounts = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("99999"), places=2).map(str)
currencies = st.sampled_from(sorted(ISO_CURRENCIES))


def base(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "type": st.just(kind),
            "event_id": ids,
            "customer_id": ids,
            "occurred_at": timestamps,
            "schema_version": st.just(1),
        }
    )


def with_fields(kind: str, fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.tuples(base(kind), st.fixed_dictionaries(fields)).map(lambda pair: {**pair[0], **pair[1]})


valid_events = st.one_of(
    with_fields("purchase.completed", {"order_id": ids, "amount": amounts, "currency": currencies}),
    with_fields("purchase.refunded", {"order_id": ids, "amount": amounts, "currency": currencies}),
    with_fields(
        "feedback.received",
        {
            "channel": st.sampled_from(["survey", "review", "support", "complaint_form", "social"]),
            "nps": st.integers(0, 10),
            "csat": st.integers(1, 5),
            "audience": st.integers(0, 10**9),
            "share_of_wallet": st.decimals(min_value=0, max_value=1, places=2).map(str),
        },
    ),
    with_fields(
        "customer.registered",
        {"kind": st.sampled_from(["final", "external", "internal"]), "referred_by": ids},
    ),
    with_fields("customer.interest_shown", {"signal": st.sampled_from(["cart", "wishlist", "visit"])}),
    base("customer.erasure_requested"),
)

REQUIRED = ("type", "event_id", "customer_id", "occurred_at", "schema_version")
wrong_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.text(max_size=5),
    st.just("x" * 10_000),
)


def printable_by_contract(text: str) -> bool:
    """The contract's Id: no control, format, surrogate, private-use or separator characters, but space.

    Not `str.isprintable()`: Python 3.11's Unicode tables (14.0) call characters assigned since then
    "unassigned", while the schema's regex (Rust, newer tables) rightly accepts them (e.g. U+1CC00).
    """
    banned = {"Cc", "Cf", "Cs", "Co", "Zs", "Zl", "Zp"}
    return all(ch == " " or unicodedata.category(ch) not in banned for ch in text)


def assert_invariants(event: Any) -> None:
    """What every accepted event guarantees to the core."""
    assert 1 <= len(event.event_id) <= 128 and printable_by_contract(event.event_id)
    assert 1 <= len(event.customer_id) <= 128 and printable_by_contract(event.customer_id)
    assert event.occurred_at.tzinfo is UTC
    assert event.occurred_at <= NOW + LIMITS.max_skew
    assert event.schema_version == 1
    if isinstance(event, PurchaseCompleted | PurchaseRefunded):
        assert isinstance(event.amount, Decimal) and event.amount.is_finite() and event.amount > 0
        assert event.currency in ISO_CURRENCIES
    if isinstance(event, FeedbackReceived):
        assert event.nps is None or 0 <= event.nps <= 10
        assert event.csat is None or 1 <= event.csat <= 5
        assert event.audience >= 0
        assert event.share_of_wallet is None or 0 <= event.share_of_wallet <= 1
    # The accepted event survives a round trip through its own JSON.
    assert inbound_adapter.validate_json(event.model_dump_json()) == event


def check(raw: bytes) -> Any:
    result = decode(raw, now=NOW, limits=LIMITS)  # must not raise
    if isinstance(result, Rejection):
        assert result.reason and result.message
        assert result.size == len(raw)
    else:
        assert_invariants(result)
    return result


@FUZZ
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    check(raw)


@FUZZ
@given(valid_events)
def test_valid_events_are_accepted(event: dict[str, Any]) -> None:
    assert not isinstance(check(orjson.dumps(event)), Rejection)


@FUZZ
@given(valid_events, st.data())
def test_dropping_a_required_field_is_rejected(event: dict[str, Any], data: st.DataObject) -> None:
    field = data.draw(st.sampled_from(REQUIRED))
    del event[field]
    result = check(orjson.dumps(event))
    assert isinstance(result, Rejection)
    assert result.reason == "missing_field" and field in result.message


@FUZZ
@given(valid_events, st.data(), wrong_values)
def test_a_wrong_value_anywhere_never_slips_through(event: dict[str, Any], data: st.DataObject, value: Any) -> None:
    field = data.draw(st.sampled_from(sorted(event)))
    event[field] = value
    check(json.dumps(event).encode())  # stdlib json: it also writes integers beyond 64 bits


@FUZZ
@given(valid_events.filter(lambda e: "amount" in e), st.sampled_from(["0", "-0.01", "-5", 0, -1, "0.00"]))
def test_zero_and_negative_amounts_are_rejected(event: dict[str, Any], amount: Any) -> None:
    event["amount"] = amount
    result = check(orjson.dumps(event))
    assert isinstance(result, Rejection) and "amount" in result.message


@FUZZ
@given(valid_events, st.sampled_from(["NaN", "Infinity", "-Infinity"]), st.text(min_size=1, max_size=8))
def test_nan_and_infinity_tokens_are_rejected(event: dict[str, Any], token: str, name: str) -> None:
    raw = orjson.dumps(event)[:-1] + f', "{name}-extra": {token}}}'.encode()
    result = check(raw)
    assert isinstance(result, Rejection) and result.reason == "invalid_json"


@FUZZ
@given(valid_events, st.integers(min_value=0), st.binary(min_size=1, max_size=3))
def test_invalid_utf8_is_rejected(event: dict[str, Any], where: int, junk: bytes) -> None:
    raw = orjson.dumps(event)
    position = where % len(raw)
    broken = raw[:position] + b"\xc3\x28" + junk + raw[position:]  # \xc3\x28 is never valid UTF-8
    result = check(broken)
    assert isinstance(result, Rejection)


@FUZZ
@given(valid_events, st.integers(min_value=1, max_value=3000))
def test_deep_nesting_never_raises(event: dict[str, Any], depth: int) -> None:
    raw = orjson.dumps(event)[:-1] + b', "nested": ' + b"[" * depth + b"]" * depth + b"}"
    result = check(raw)
    if depth > 250:
        assert isinstance(result, Rejection)


@FUZZ
@given(valid_events, st.integers(min_value=0, max_value=200))
def test_truncated_events_never_raise(event: dict[str, Any], cut: int) -> None:
    raw = orjson.dumps(event)
    assert isinstance(check(raw[: max(0, len(raw) - 1 - cut)]), Rejection)


@FUZZ
@given(valid_events, st.sampled_from(["event_id", "customer_id"]), st.integers(129, 5000))
def test_huge_ids_are_rejected(event: dict[str, Any], field: str, size: int) -> None:
    event[field] = "x" * size
    result = check(orjson.dumps(event))
    assert isinstance(result, Rejection) and field in result.message


@FUZZ
@given(valid_events, st.integers(min_value=6, max_value=10**6))
def test_far_future_timestamps_are_rejected(event: dict[str, Any], minutes: int) -> None:
    event["occurred_at"] = (NOW + timedelta(minutes=minutes)).isoformat()
    result = check(orjson.dumps(event))
    assert isinstance(result, Rejection) and result.reason == "timestamp_in_future"
