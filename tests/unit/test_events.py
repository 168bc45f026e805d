"""The event models hold the contract: types, ranges, money, currencies, timestamps and ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson
import pytest
from iso4217 import Currency
from pydantic import ValidationError

from schemas.events import (
    INBOUND_TYPES,
    ISO_CURRENCIES,
    STEPS,
    ClassificationChanged,
    CustomerRegistered,
    ErasureRequested,
    EventBase,
    EventRejected,
    FeedbackReceived,
    InterestShown,
    PerkGranted,
    PurchaseCompleted,
    PurchaseRefunded,
    RejectionSource,
    StepChanged,
    inbound_adapter,
    outbound_adapter,
)

pytestmark = pytest.mark.unit

COMMON: dict[str, Any] = {
    "event_id": "e-1",
    "customer_id": "c-42",
    "occurred_at": "2026-03-01T10:00:00Z",
    "schema_version": 1,
}


def inbound(type_: str, **fields: Any) -> Any:
    """Validate an inbound event from its JSON text, as the decoder does."""
    return inbound_adapter.validate_json(orjson.dumps({**COMMON, "type": type_, **fields}))


def purchase(**fields: Any) -> Any:
    return inbound("purchase.completed", **{"order_id": "o-9", "amount": "59.90", "currency": "EUR", **fields})


def feedback(**fields: Any) -> Any:
    return inbound("feedback.received", **{"channel": "survey", **fields})


def error_types(excinfo: pytest.ExceptionInfo[ValidationError]) -> set[str]:
    return {error["type"] for error in excinfo.value.errors()}


def error_fields(excinfo: pytest.ExceptionInfo[ValidationError]) -> set[str]:
    return {".".join(str(part) for part in error["loc"][1:]) for error in excinfo.value.errors()}


# ---- the discriminated union ----------------------------------------------------------------------

MINIMAL: dict[str, dict[str, Any]] = {
    "customer.registered": {},
    "customer.interest_shown": {"signal": "cart"},
    "customer.erasure_requested": {},
    "purchase.completed": {"order_id": "o-9", "amount": "1", "currency": "EUR"},
    "purchase.refunded": {"order_id": "o-9", "amount": "1", "currency": "EUR"},
    "feedback.received": {"channel": "review"},
}


@pytest.mark.parametrize("type_", sorted(MINIMAL))
def test_each_type_selects_its_model(type_: str) -> None:
    event = inbound(type_, **MINIMAL[type_])
    assert event.type == type_
    assert type(event) is INBOUND_TYPES[type_]
    assert isinstance(event, EventBase)


def test_the_six_inbound_types_are_the_contract() -> None:
    assert set(INBOUND_TYPES) == {
        "customer.registered",
        "customer.interest_shown",
        "customer.erasure_requested",
        "purchase.completed",
        "purchase.refunded",
        "feedback.received",
    }
    assert INBOUND_TYPES["customer.erasure_requested"] is ErasureRequested
    assert INBOUND_TYPES["purchase.refunded"] is PurchaseRefunded
    assert INBOUND_TYPES["customer.interest_shown"] is InterestShown


def test_an_unknown_type_is_its_own_error() -> None:
    with pytest.raises(ValidationError) as excinfo:
        inbound("purchase.teleported")
    assert error_types(excinfo) == {"union_tag_invalid"}


def test_only_schema_version_1_exists() -> None:
    with pytest.raises(ValidationError) as excinfo:
        inbound("customer.erasure_requested", schema_version=2)
    assert error_fields(excinfo) == {"schema_version"}


def test_defaults_are_those_of_the_contract() -> None:
    registered = inbound("customer.registered")
    assert (registered.kind, registered.traits, registered.referred_by) == ("final", None, None)
    answer = feedback()
    assert (answer.nps, answer.csat, answer.expectation, answer.share_of_wallet) == (None, None, None, None)
    assert (answer.complaint, answer.formal, answer.public, answer.audience) == (False, False, False, 0)


def test_unknown_fields_are_ignored_and_not_kept() -> None:
    event = inbound("customer.registered", loyalty_tier="gold", traits={"has_need": True, "colour": "red"})
    assert isinstance(event, CustomerRegistered)
    assert event.traits is not None and event.traits.has_need is True
    dumped = event.model_dump()
    assert "loyalty_tier" not in dumped and "colour" not in dumped["traits"]


def test_events_are_frozen() -> None:
    event = purchase()
    with pytest.raises(ValidationError):
        event.amount = Decimal("1")
    assert event.amount == Decimal("59.90")


@pytest.mark.parametrize(
    ("type_", "field", "value"),
    [
        ("customer.registered", "kind", "partner"),
        ("customer.interest_shown", "signal", "click"),
        ("feedback.received", "channel", "email"),
        ("feedback.received", "expectation", "unmet"),
    ],
)
def test_closed_vocabularies_refuse_other_words(type_: str, field: str, value: str) -> None:
    with pytest.raises(ValidationError) as excinfo:
        inbound(type_, **{**MINIMAL[type_], field: value})
    assert field in error_fields(excinfo)


# ---- timestamps -----------------------------------------------------------------------------------


def test_a_timestamp_with_an_offset_is_the_same_instant_in_utc() -> None:
    event = inbound("customer.registered", occurred_at="2026-03-01T12:30:00+02:30")
    assert event.occurred_at == datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    assert event.occurred_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize("value", ["2026-03-01T10:00:00", "2026-03-01", 1772359200, "yesterday", ""])
def test_naive_dates_numbers_and_words_are_not_timestamps(value: Any) -> None:
    with pytest.raises(ValidationError) as excinfo:
        inbound("customer.registered", occurred_at=value)
    assert error_fields(excinfo) == {"occurred_at"}


def test_python_callers_get_the_same_rule_for_naive_datetimes() -> None:
    with pytest.raises(ValidationError):
        ErasureRequested(**{**COMMON, "occurred_at": datetime(2026, 3, 1, 10)}, type="customer.erasure_requested")
    aware = datetime(2026, 3, 1, 5, tzinfo=timezone(timedelta(hours=-5)))
    event = ErasureRequested(**{**COMMON, "occurred_at": aware}, type="customer.erasure_requested")
    assert event.occurred_at == datetime(2026, 3, 1, 10, tzinfo=UTC)


# ---- money and currencies -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"), [("59.90", "59.90"), (0.1, "0.1"), (12, "12"), ("0.0001", "0.0001"), (1e-4, "0.0001")]
)
def test_amounts_are_exact_decimals_from_strings_or_numbers(given: Any, expected: str) -> None:
    event = purchase(amount=given)
    assert isinstance(event.amount, Decimal)
    assert event.amount == Decimal(expected)


@pytest.mark.parametrize("amount", ["0", "0.00", "-0.01", -3, 0, "0.00001", "1e400", "abc", True, None])
def test_amounts_must_be_positive_finite_decimals_of_at_most_four_places(amount: Any) -> None:
    for model in ("purchase.completed", "purchase.refunded"):
        with pytest.raises(ValidationError) as excinfo:
            inbound(model, order_id="o-9", amount=amount, currency="EUR")
        assert error_fields(excinfo) == {"amount"}


def test_python_callers_cannot_pass_a_float_nan_or_infinity() -> None:
    fields = {**COMMON, "type": "purchase.completed", "order_id": "o-9", "currency": "EUR"}
    for amount in (Decimal("NaN"), Decimal("Infinity"), float("nan"), float("inf")):
        with pytest.raises(ValidationError):
            PurchaseCompleted.model_validate({**fields, "amount": amount})


def test_currencies_are_the_maintained_iso_4217_list_without_non_money_codes() -> None:
    assert {"EUR", "USD", "JPY", "GBP", "CHF", "MXN"} <= ISO_CURRENCIES
    assert "XTS" not in ISO_CURRENCIES and "XXX" not in ISO_CURRENCIES
    assert len(ISO_CURRENCIES) == len({c.code for c in Currency}) - 2
    assert all(len(code) == 3 and code.isascii() and code.isupper() for code in ISO_CURRENCIES)


@pytest.mark.parametrize("currency", ["JPY", "CHF", "USD"])
def test_any_iso_currency_is_accepted_by_the_model(currency: str) -> None:
    assert purchase(currency=currency).currency == currency


@pytest.mark.parametrize("currency", ["eur", "EURO", "ABC", "XTS", "", 978])
def test_other_currency_codes_are_refused(currency: Any) -> None:
    with pytest.raises(ValidationError) as excinfo:
        purchase(currency=currency)
    assert error_fields(excinfo) == {"currency"}


# ---- ranges and ids -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "accepted", "refused"),
    [
        ("nps", [0, 10], [-1, 11, 9.5, "high"]),
        ("csat", [1, 5], [0, 6]),
        ("share_of_wallet", [0, 1, "0.9", 0.25], [-0.01, "1.01", 2, "NaN"]),
        ("audience", [0, 10**9], [-1, 1.5]),
    ],
)
def test_feedback_ranges_hold_at_their_bounds(field: str, accepted: list[Any], refused: list[Any]) -> None:
    for value in accepted:
        answer = feedback(**{field: value})
        assert isinstance(answer, FeedbackReceived)
        assert getattr(answer, field) == (Decimal(str(value)) if field == "share_of_wallet" else value)
    for value in refused:
        with pytest.raises(ValidationError) as excinfo:
            feedback(**{field: value})
        assert error_fields(excinfo) == {field}, value


@pytest.mark.parametrize("value", ["c", "c" * 128, "ACME customer 7", "cliente-ñandú-42"])
def test_ids_of_1_to_128_printable_characters_are_accepted(value: str) -> None:
    assert inbound("customer.registered", customer_id=value, referred_by=value).customer_id == value


@pytest.mark.parametrize("value", ["", "c" * 129, "c\n42", "c\x0042", "c\u200b42", "\t", 42])
def test_empty_long_unprintable_or_non_string_ids_are_refused(value: Any) -> None:
    for field in ("event_id", "customer_id", "referred_by"):
        with pytest.raises(ValidationError) as excinfo:
            inbound("customer.registered", **{field: value})
        assert error_fields(excinfo) == {field}


def test_required_ids_cannot_be_null_but_a_referrer_may_be_absent() -> None:
    assert inbound("customer.registered", referred_by=None).referred_by is None
    for field in ("event_id", "customer_id"):
        with pytest.raises(ValidationError) as excinfo:
            inbound("customer.registered", **{field: None})
        assert error_fields(excinfo) == {field}


def test_a_category_is_bounded() -> None:
    assert purchase(category="c" * 128).category == "c" * 128
    with pytest.raises(ValidationError):
        purchase(category="c" * 129)


# ---- outbound -------------------------------------------------------------------------------------

DECISION: dict[str, Any] = {
    **COMMON,
    "occurred_at": datetime(2026, 3, 1, 10, tzinfo=UTC),
    "policy_version": "p-1a2b",
    "caused_by": "e-3",
    "rule": "rule_name",
    "explanation": "Because.",
    "evidence": {"purchases_90d": 3, "spend_90d": "120.50", "referred": True, "nps": None},
}


def test_every_outbound_event_round_trips_through_json() -> None:
    events = [
        PerkGranted(**DECISION, type="perk.granted", perk_id="e-1", perk="welcome_offer"),
        StepChanged(**DECISION, type="customer.step_changed", from_step=None, to_step="possible"),
        ClassificationChanged(
            **DECISION, type="customer.classification_changed", dimension="risk", from_value="none", to_value="at_risk"
        ),
        EventRejected(
            **{**DECISION, "customer_id": None},
            type="event.rejected",
            reason="invalid_json",
            message="payload: not JSON",
            payload="{oops",
            payload_truncated=False,
            payload_size=5,
            source=RejectionSource(topic="purchases", partition=3, offset=17),
        ),
    ]
    for event in events:
        again = outbound_adapter.validate_json(event.model_dump_json())
        assert type(again) is type(event)
        assert again == event


@pytest.mark.parametrize(
    ("model", "fields", "wrong"),
    [
        (PerkGranted, {"type": "perk.granted", "perk_id": "e-1", "perk": "free_money"}, "perk"),
        (StepChanged, {"type": "customer.step_changed", "from_step": "buyer", "to_step": "champion"}, "to_step"),
        (
            ClassificationChanged,
            {"type": "customer.classification_changed", "dimension": "mood", "from_value": None, "to_value": "x"},
            "dimension",
        ),
    ],
)
def test_outbound_vocabularies_are_closed(model: type[EventBase], fields: dict[str, Any], wrong: str) -> None:
    with pytest.raises(ValidationError) as excinfo:
        model.model_validate({**DECISION, **fields})
    assert [error["loc"] for error in excinfo.value.errors()] == [(wrong,)]


def test_a_dead_letter_has_a_stable_reason_and_a_non_negative_size() -> None:
    fields: dict[str, Any] = {
        **DECISION,
        "type": "event.rejected",
        "reason": "invalid_json",
        "message": "payload: not JSON",
        "payload": "{",
        "payload_truncated": False,
        "payload_size": 1,
        "source": {"line": 3},
    }
    assert EventRejected.model_validate(fields).source.line == 3
    for wrong, value in (("reason", "bad_vibes"), ("payload_size", -1)):
        with pytest.raises(ValidationError) as excinfo:
            EventRejected.model_validate({**fields, wrong: value})
        assert [error["loc"] for error in excinfo.value.errors()] == [(wrong,)]


def test_the_ladder_has_seven_steps_in_order() -> None:
    assert STEPS == ("possible", "potential", "buyer", "occasional", "habitual", "exclusive", "propagandist")
