"""The decoder turns bytes into an event, or a rejection with a stable reason naming the field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest

from schemas.decoder import DEFAULT_LIMITS, MAX_PAYLOAD_CHARS, DecodeLimits, Rejection, decode
from schemas.events import (
    INBOUND_TYPES,
    CustomerRegistered,
    FeedbackReceived,
    PurchaseCompleted,
    RejectionSource,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def purchase(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "purchase.completed",
        "event_id": "e-3",
        "customer_id": "c-42",
        "occurred_at": "2026-03-05T10:00:00Z",
        "schema_version": 1,
        "order_id": "o-9",
        "amount": "59.90",
        "currency": "EUR",
        "category": "coffee",
    }
    event.update(changes)
    return {k: v for k, v in event.items() if v is not ...}


def encode(event: dict[str, Any]) -> bytes:
    return orjson.dumps(event)


def rejected(raw: bytes, limits: DecodeLimits = DEFAULT_LIMITS, key: bytes | None = None) -> Rejection:
    result = decode(raw, now=NOW, limits=limits, key=key)
    assert isinstance(result, Rejection), f"accepted: {result!r}"
    return result


def test_the_domain_examples_are_accepted_with_exact_values() -> None:
    event = decode(encode(purchase(occurred_at="2026-03-05T12:00:00+02:00", extra_field=[1])), now=NOW)
    assert isinstance(event, PurchaseCompleted)
    assert event.amount == Decimal("59.90")
    assert event.occurred_at == datetime(2026, 3, 5, 10, 0, tzinfo=UTC)  # normalised to UTC
    feedback = decode(
        b'{"type": "feedback.received", "event_id": "e-5", "customer_id": "c-42", '
        b'"occurred_at": "2026-03-10T10:00:00Z", "schema_version": 1, "channel": "survey", "nps": 9, '
        b'"csat": 5, "expectation": "exceeded", "complaint": false, "formal": false, "public": false, '
        b'"audience": 0, "share_of_wallet": 0.9}',
        now=NOW,
    )
    assert isinstance(feedback, FeedbackReceived)
    assert feedback.share_of_wallet == Decimal("0.9")
    registered = decode(
        b'{"type": "customer.registered", "event_id": "e-1", "customer_id": "c-42", '
        b'"occurred_at": "2026-03-01T10:00:00Z", "schema_version": 1, "kind": "final", '
        b'"traits": {"has_need": true, "can_afford": true, "can_decide": false}, "referred_by": "c-7"}',
        now=NOW,
    )
    assert isinstance(registered, CustomerRegistered)
    assert registered.traits is not None and registered.traits.can_decide is False


def test_amount_may_be_a_json_number() -> None:
    event = decode(encode(purchase(amount=12.5)), now=NOW)
    assert isinstance(event, PurchaseCompleted) and event.amount == Decimal("12.5")


@pytest.mark.parametrize(
    ("raw", "reason", "names"),
    [
        (b"\xff\xfe{}", "invalid_utf8", "UTF-8"),
        (encode(purchase(category="caf\u00e9")).replace(b"\xc3\xa9", b"\xe9"), "invalid_utf8", "UTF-8"),
        (b'{"type": ', "invalid_json", "EOF"),
        (b"", "invalid_json", "EOF"),
        (b"[1, 2]", "not_an_object", "object"),
        (b'"purchase.completed"', "not_an_object", "object"),
        (b"{}", "missing_field", "type"),
        (encode(purchase(type="purchase.cancelled")), "unknown_type", "purchase.cancelled"),
        (encode(purchase(schema_version=2)), "unsupported_version", "schema_version"),
        (encode(purchase(schema_version=...)), "missing_field", "schema_version"),
        (encode(purchase(amount=...)), "missing_field", "amount"),
        (encode(purchase(amount="0")), "invalid_field", "amount"),
        (encode(purchase(amount="-5")), "invalid_field", "amount"),
        (encode(purchase(amount="12.345678")), "invalid_field", "amount"),
        (encode(purchase(amount="lots")), "invalid_field", "amount"),
        (encode(purchase(amount="NaN")), "invalid_field", "amount"),
        (encode(purchase(amount="Infinity")), "invalid_field", "amount"),
        (encode(purchase(currency="ABC")), "unknown_currency", "currency"),
        (encode(purchase(currency="eur")), "unknown_currency", "currency"),
        (encode(purchase(occurred_at="2026-03-05T10:00:00")), "invalid_field", "occurred_at"),
        (encode(purchase(occurred_at=1772704800)), "invalid_field", "occurred_at"),
        (encode(purchase(occurred_at="yesterday")), "invalid_field", "occurred_at"),
        (encode(purchase(customer_id="")), "invalid_field", "customer_id"),
        (encode(purchase(customer_id="c" * 129)), "invalid_field", "customer_id"),
        (encode(purchase(customer_id="c\u0000")), "invalid_field", "customer_id"),
        (encode(purchase(event_id=7)), "invalid_field", "event_id"),
        (
            encode({**purchase(), "type": "feedback.received", "channel": "survey", "nps": 11}),
            "invalid_field",
            "nps",
        ),
        (
            encode({**purchase(), "type": "feedback.received", "channel": "survey", "csat": 0}),
            "invalid_field",
            "csat",
        ),
        (
            encode({**purchase(), "type": "feedback.received", "channel": "fax"}),
            "invalid_field",
            "channel",
        ),
        (
            encode({**purchase(), "type": "feedback.received", "channel": "survey", "share_of_wallet": 1.2}),
            "invalid_field",
            "share_of_wallet",
        ),
        (
            encode({**purchase(), "type": "feedback.received", "channel": "social", "audience": -1}),
            "invalid_field",
            "audience",
        ),
        (encode(purchase(extra=None))[:-1] + b', "x": NaN}', "invalid_json", "NaN"),
        (b'{"a": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", "invalid_json", "recursion"),
    ],
)
def test_each_defect_has_its_reason_and_names_the_field(raw: bytes, reason: str, names: str) -> None:
    rejection = rejected(raw)
    assert rejection.reason == reason
    assert names in rejection.message


def test_an_unknown_type_lists_the_known_types_and_the_closest_one() -> None:
    # a user guessing feedback.submitted was told only that it is unknown, not that feedback.received exists
    rejection = decode(encode({**purchase(), "type": "feedback.submitted"}), now=NOW)
    assert isinstance(rejection, Rejection) and rejection.reason == "unknown_type"
    assert rejection.message == (
        "type: 'feedback.submitted' is not an event type Escalera knows; did you mean 'feedback.received'? "
        "(known: customer.erasure_requested, customer.interest_shown, customer.registered, feedback.received, "
        "purchase.completed, purchase.refunded)"
    )


@pytest.mark.parametrize("given", ["zzz", 7, ["purchase.completed"], "purchase.completed" * 100])
def test_an_unknown_type_unlike_any_known_one_lists_them_all_without_a_guess(given: Any) -> None:
    rejection = decode(encode({**purchase(), "type": given}), now=NOW)
    assert isinstance(rejection, Rejection) and rejection.reason == "unknown_type"
    assert "did you mean" not in rejection.message
    assert all(event_type in rejection.message for event_type in INBOUND_TYPES)


def test_a_timestamp_beyond_the_allowed_skew_is_in_the_future() -> None:
    limits = DecodeLimits(max_skew=timedelta(minutes=5))
    just_inside = (NOW + timedelta(minutes=4, seconds=59)).isoformat()
    just_outside = (NOW + timedelta(minutes=5, seconds=1)).isoformat()
    assert isinstance(decode(encode(purchase(occurred_at=just_inside)), now=NOW, limits=limits), PurchaseCompleted)
    rejection = rejected(encode(purchase(occurred_at=just_outside)), limits)
    assert rejection.reason == "timestamp_in_future"
    assert "occurred_at" in rejection.message


def test_only_the_policy_currencies_are_accepted_when_given() -> None:
    limits = DecodeLimits(currencies=frozenset({"EUR", "USD"}))
    assert isinstance(decode(encode(purchase(currency="USD")), now=NOW, limits=limits), PurchaseCompleted)
    rejection = rejected(encode(purchase(currency="JPY")), limits)
    assert rejection.reason == "unknown_currency"
    assert "JPY" in rejection.message and "EUR, USD" in rejection.message


def test_oversized_payloads_are_refused_before_parsing_and_kept_bounded() -> None:
    raw = b'{"type": "' + b"x" * 100_000 + b'"}'
    rejection = rejected(raw, DecodeLimits(max_bytes=65_536))
    assert rejection.reason == "too_large"
    assert str(len(raw)) in rejection.message
    assert rejection.size == len(raw)
    dead_letter = rejection.to_event(RejectionSource(topic="purchases", partition=3, offset=17), NOW)
    assert len(dead_letter.payload) == MAX_PAYLOAD_CHARS
    assert dead_letter.payload_truncated is True
    assert dead_letter.payload_size == len(raw)


def test_a_dead_letter_keeps_the_payload_reason_source_and_customer() -> None:
    raw = encode(purchase(amount="-1"))
    source = RejectionSource(topic="purchases", partition=1, offset=99)
    letter = rejected(raw).to_event(source, NOW)
    assert letter.reason == "invalid_field"
    assert letter.customer_id == "c-42"
    assert letter.payload == raw.decode()
    assert letter.payload_truncated is False
    assert letter.source == source
    # Deterministic: the same payload from the same place has the same id; another place, another id.
    assert rejected(raw).to_event(source, NOW).event_id == letter.event_id
    elsewhere = RejectionSource(topic="purchases", partition=1, offset=100)
    assert rejected(raw).to_event(elsewhere, NOW).event_id != letter.event_id


def test_invalid_utf8_is_shown_escaped_in_the_dead_letter() -> None:
    letter = rejected(b"\xff\xfe{}").to_event(RejectionSource(line=3), NOW)
    assert letter.payload == "\\xff\\xfe{}"


def test_the_record_key_names_the_customer_of_an_unreadable_payload() -> None:
    assert rejected(b"{broken", key=b"c-9").customer_id == "c-9"
    assert rejected(b"{broken").customer_id is None


def test_a_record_without_a_value_is_rejected_not_a_crash() -> None:
    found = decode(None, now=datetime.now(UTC), key=b"c-1")
    assert isinstance(found, Rejection) and found.reason == "invalid_json" and found.customer_id == "c-1"
