"""The decoder's fast path changes nothing but speed: every payload decodes as pydantic alone decodes it."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.decoder import Rejection, decode, decode_with_pydantic
from schemas.events import INBOUND_TYPES
from schemas.fast_path import fast_decode
from tests.unit.test_decoder_fuzz import FUZZ, LIMITS, NOW, valid_events

EDGE_VALUES: list[Any] = [
    # timestamps: fractions beyond microseconds, other separators and offsets, leap seconds, out of range
    "2025-07-01T21:20:08.1234567Z", "2025-07-01T21:20:08.9999999Z", "2025-07-01t21:20:08z", "2025-07-01 21:20:08Z",
    "2025-07-01T21:20:08+05:30", "2025-07-01T21:20:08-00:00", "2025-07-01T21:20:08+23:59", "2025-07-01T21:20:60Z",
    "2025-07-01T24:00:00Z", "0000-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00",
    "2025-07-01T21:20:08+0100", "20250701T212008Z", "2025-07-01T21:20:08,5Z", "2025-07-01T21:20Z",
    "2025-02-29T00:00:00Z", "2025-07-01T21:20:08", "2025-07-01",
    # amounts and shares
    "1e3", "1E+3", "0.00001", " 12", "12 ", "NaN", "-Infinity", "12.", ".5", "0012.50", "1.0000", "0.0000", "0",
    "99999999999999.9999", "999999999999999", "1.00001", "0.8", "1", "+1", "١٢", 1.5, 12, 0.1, 1e-7, 1e300,
    # other types and sizes
    True, False, 1.0, 10**30, -1, 0, 5, 10, 11, None, [], {}, {"has_need": True}, [1, 2],
    "", "a\x00b", "a\u200bb", "a b", "é", "\U0001cc00", "x" * 128, "x" * 129, "\ud800",
    # literals near the contract's values
    "EUR", "XTS", "eur", "ZZZ", "final", "Final", "cart", "survey", "exceeded", "purchase.completed",
]  # fmt: skip
edge_values = st.sampled_from(EDGE_VALUES) | st.text(max_size=6) | st.integers(-(2**70), 2**70)


def decoded_alike(a: Any, b: Any) -> bool:
    """The same event (type, values, their JSON, UTC as the zone) or the same rejection (reason, message)."""
    if isinstance(a, Rejection) or isinstance(b, Rejection):
        return isinstance(a, Rejection) and isinstance(b, Rejection) and (a.reason, a.message) == (b.reason, b.message)
    return (
        type(a) is type(b)
        and a.__dict__ == b.__dict__
        and a.model_dump_json() == b.model_dump_json()
        and a.occurred_at.tzinfo is b.occurred_at.tzinfo
    )


def assert_same_as_pydantic(raw: bytes) -> None:
    fast = fast_decode(raw, LIMITS.currencies)
    reference = decode_with_pydantic(raw, now=NOW, limits=LIMITS)
    if fast is not None:
        assert not isinstance(reference, Rejection), f"fast path took what pydantic refuses: {raw!r}"
        assert decoded_alike(fast, reference), raw
    assert decoded_alike(decode(raw, now=NOW, limits=LIMITS), reference), raw


@FUZZ
@given(valid_events)
def test_valid_events_decode_as_pydantic_decodes_them(event: dict[str, Any]) -> None:
    assert_same_as_pydantic(orjson.dumps(event))


@FUZZ
@given(valid_events, st.data(), edge_values)
def test_an_edge_value_in_any_field_decodes_as_pydantic_decodes_it(
    event: dict[str, Any], data: st.DataObject, value: Any
) -> None:
    field = data.draw(st.sampled_from([*sorted(event), "traits", "category", "nps", "referred_by", "unknown"]))
    event[field] = value
    # a lone surrogate written raw is not UTF-8: exactly what a broken producer could send
    assert_same_as_pydantic(json.dumps(event, ensure_ascii=data.draw(st.booleans())).encode("utf-8", "surrogatepass"))


@FUZZ
@given(valid_events, st.data(), edge_values)
def test_a_repeated_key_decodes_as_pydantic_decodes_it(event: dict[str, Any], data: st.DataObject, value: Any) -> None:
    field = data.draw(st.sampled_from(sorted(event)))
    raw = orjson.dumps(event)
    first = data.draw(st.booleans())
    again = json.dumps({field: value})[1:-1].encode()
    assert_same_as_pydantic(b"{" + again + b"," + raw[1:] if first else raw[:-1] + b"," + again + b"}")


@FUZZ
@given(valid_events, st.integers(min_value=0, max_value=400), st.sampled_from([b"[", b"{", b'{"a":']))
def test_nesting_in_an_unknown_field_decodes_as_pydantic_decodes_it(
    event: dict[str, Any], depth: int, opener: bytes
) -> None:
    closer = b"]" if opener == b"[" else b"}"
    inner = b"1" if opener == b'{"a":' else b""
    nested = opener * depth + inner + closer * depth
    assert_same_as_pydantic(orjson.dumps(event)[:-1] + b', "extra": ' + (nested or b"0") + b"}")


PLAIN = {
    "customer.registered": {"kind": "internal", "traits": {"has_need": True, "can_decide": False},
                            "referred_by": "c-7"},
    "customer.interest_shown": {"signal": "wishlist"},
    "customer.erasure_requested": {},
    "purchase.completed": {"order_id": "o-9", "amount": "59.90", "currency": "USD", "category": "coffee"},
    "purchase.refunded": {"order_id": "o-9", "amount": "10", "currency": "EUR"},
    "feedback.received": {"channel": "review", "nps": 9, "csat": 5, "expectation": "met", "complaint": False,
                          "public": True, "audience": 600, "share_of_wallet": "0.85"},
}  # fmt: skip


def plain(kind: str, **changes: Any) -> dict[str, Any]:
    event = {"type": kind, "event_id": "e-1", "customer_id": "c-42", "occurred_at": "2026-03-01T10:00:00+01:00"}
    return {**event, "schema_version": 1, **PLAIN[kind], **changes}


@pytest.mark.parametrize("kind", sorted(INBOUND_TYPES))
def test_a_plain_event_of_every_type_takes_the_fast_path(kind: str) -> None:
    raw = orjson.dumps(plain(kind))
    event = fast_decode(raw, LIMITS.currencies)
    assert event is not None, "the fast path no longer takes plain events: the replay and the worker slow down"
    assert decoded_alike(event, decode_with_pydantic(raw, now=NOW, limits=LIMITS))


@pytest.mark.parametrize(
    ("kind", "changes"),
    [
        ("purchase.completed", {"amount": 59.9}),  # numbers are pydantic's to convert
        ("purchase.completed", {"amount": "1e3"}),
        ("purchase.completed", {"currency": "XTS"}),  # not money
        ("purchase.completed", {"category": "caf\u00e9\u200b"}),  # a format character
        ("purchase.refunded", {"order_id": "o\t9"}),
        ("feedback.received", {"share_of_wallet": 0.85}),
        ("feedback.received", {"nps": 11}),
        ("feedback.received", {"audience": True}),
        ("customer.registered", {"referred_by": ""}),
        ("customer.interest_shown", {"occurred_at": "2026-03-01T10:00:00"}),  # naive
        ("customer.interest_shown", {"occurred_at": "2026-03-01 10:00:00Z"}),  # pydantic accepts it; not plain
        ("customer.interest_shown", {"event_id": "e\\u0031"}),  # any escape
        ("customer.erasure_requested", {"schema_version": 2}),
    ],
)
def test_anything_unusual_is_left_to_pydantic(kind: str, changes: dict[str, Any]) -> None:
    raw = orjson.dumps(plain(kind, **changes)).replace(b"\\\\", b"\\")
    assert fast_decode(raw, LIMITS.currencies) is None
    assert decoded_alike(decode(raw, now=NOW, limits=LIMITS), decode_with_pydantic(raw, now=NOW, limits=LIMITS))


def test_a_currency_without_a_rate_is_left_to_pydantic_which_names_it() -> None:
    raw = orjson.dumps(plain("purchase.completed", currency="JPY"))
    limits = type(LIMITS)(max_bytes=LIMITS.max_bytes, max_skew=LIMITS.max_skew, currencies=frozenset({"EUR", "USD"}))
    assert fast_decode(raw, limits.currencies) is None
    result = decode(raw, now=NOW, limits=limits)
    assert isinstance(result, Rejection) and result.reason == "unknown_currency"
