"""The decoder's fast path: a plain, valid event of the common shape, decoded without pydantic's cost.

msgspec checks the structure (types, literals, ranges) in one pass; the checks below hold the rest of the
contract to the letter (identifiers, RFC 3339 timestamps, decimal strings, currencies), more strictly than
the contract where that is cheaper. Anything unusual gives None, which means "ask pydantic" and never
"reject": pydantic stays the one judge of rejections and their reasons. A property test checks that every
event taken here is the event pydantic gives for the same bytes.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec

from schemas.construct import trusted
from schemas.events import (
    ISO_CURRENCIES,
    CustomerRegistered,
    ErasureRequested,
    FeedbackReceived,
    InboundEvent,
    InterestShown,
    PurchaseCompleted,
    PurchaseRefunded,
    Traits,
)

_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)").fullmatch
_MONEY = re.compile(r"(?=.*[1-9])\d{1,14}(?:\.\d{1,4})?").fullmatch  # the contract's pattern for amounts
_SHARE = re.compile(r"0(?:\.\d{1,4})?|1(?:\.0{1,4})?").fullmatch
_LONG = 512  # events are shorter: a longer payload may hide deep nesting, which pydantic's parser judges
_MAX_BRACKETS = 32
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]  # and printable: checked after decoding


class _Traits(msgspec.Struct):
    has_need: bool | None = None
    can_afford: bool | None = None
    can_decide: bool | None = None


class _Event(msgspec.Struct, tag_field="type"):
    event_id: Id
    customer_id: Id
    occurred_at: str
    schema_version: Literal[1]


class _Registered(_Event, tag="customer.registered"):
    kind: Literal["final", "external", "internal"] = "final"
    traits: _Traits | None = None
    referred_by: Id | None = None


class _Interest(_Event, tag="customer.interest_shown"):
    signal: Literal["cart", "wishlist", "newsletter", "quote_request", "visit"]


class _Erasure(_Event, tag="customer.erasure_requested"):
    pass


class _Purchase(_Event, tag="purchase.completed"):
    order_id: Id
    amount: str
    currency: str
    category: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    referred_by: Id | None = None


class _Refund(_Event, tag="purchase.refunded"):
    order_id: Id
    amount: str
    currency: str


class _Feedback(_Event, tag="feedback.received"):
    channel: Literal["survey", "review", "support", "complaint_form", "social"]
    nps: Annotated[int, msgspec.Meta(ge=0, le=10)] | None = None
    csat: Annotated[int, msgspec.Meta(ge=1, le=5)] | None = None
    expectation: Literal["exceeded", "met", "below"] | None = None
    complaint: bool = False
    formal: bool = False
    public: bool = False
    audience: Annotated[int, msgspec.Meta(ge=0)] = 0
    share_of_wallet: str | None = None


_decode = msgspec.json.Decoder(_Registered | _Interest | _Erasure | _Purchase | _Refund | _Feedback).decode


def fast_decode(raw: bytes, currencies: frozenset[str] | None) -> InboundEvent | None:
    """The event in `raw` if it is plainly valid (and its currency has a rate, when `currencies` is given);
    None when pydantic must decide."""
    try:
        # Escapes (parsers differ on lone surrogates in skipped fields), invalid UTF-8 anywhere, and deep
        # nesting are pydantic's to judge.
        if b"\\" in raw or (len(raw) > _LONG and raw.count(b"{") + raw.count(b"[") > _MAX_BRACKETS):
            return None
        if not raw.isascii():
            raw.decode()
        event = _decode(raw)
        customer_id = event.customer_id
        if not (event.event_id.isprintable() and customer_id.isprintable()) or not _TIMESTAMP(event.occurred_at):
            return None
        occurred_at = datetime.fromisoformat(event.occurred_at)
        if occurred_at.tzinfo is not UTC:
            occurred_at = occurred_at.astimezone(UTC)
        return _BUILDERS[type(event)](event, occurred_at, currencies)  # type: ignore[no-any-return]
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError, ValueError, OverflowError):
        return None


def _is_id(value: str | None) -> bool:
    """An optional identifier is absent or printable (msgspec checked its length)."""
    return value is None or value.isprintable()


def _money(value: str, currency: str, currencies: frozenset[str] | None) -> Decimal | None:
    if not _MONEY(value) or currency not in ISO_CURRENCIES or (currencies is not None and currency not in currencies):
        return None
    return Decimal(value)


def _registered(event: Any, at: datetime, _: frozenset[str] | None) -> CustomerRegistered | None:
    if not _is_id(event.referred_by):
        return None
    traits = event.traits
    if traits is not None:
        traits = trusted(
            Traits, {"has_need": traits.has_need, "can_afford": traits.can_afford, "can_decide": traits.can_decide}
        )
    return trusted(
        CustomerRegistered,
        {
            "event_id": event.event_id, "customer_id": event.customer_id, "occurred_at": at, "schema_version": 1,
            "type": "customer.registered", "kind": event.kind, "traits": traits, "referred_by": event.referred_by,
        },
    )  # fmt: skip


def _interest(event: Any, at: datetime, _: frozenset[str] | None) -> InterestShown:
    return trusted(
        InterestShown,
        {
            "event_id": event.event_id, "customer_id": event.customer_id, "occurred_at": at, "schema_version": 1,
            "type": "customer.interest_shown", "signal": event.signal,
        },
    )  # fmt: skip


def _erasure(event: Any, at: datetime, _: frozenset[str] | None) -> ErasureRequested:
    return trusted(
        ErasureRequested,
        {
            "event_id": event.event_id, "customer_id": event.customer_id, "occurred_at": at, "schema_version": 1,
            "type": "customer.erasure_requested",
        },
    )  # fmt: skip


def _purchase(event: Any, at: datetime, currencies: frozenset[str] | None) -> PurchaseCompleted | None:
    amount = _money(event.amount, event.currency, currencies)
    category = event.category
    if (
        amount is None
        or not event.order_id.isprintable()
        or (category is not None and not category.isprintable())
        or not _is_id(event.referred_by)
    ):
        return None
    return trusted(
        PurchaseCompleted,
        {
            "event_id": event.event_id, "customer_id": event.customer_id, "occurred_at": at, "schema_version": 1,
            "type": "purchase.completed", "order_id": event.order_id, "amount": amount, "currency": event.currency,
            "category": category, "referred_by": event.referred_by,
        },
    )  # fmt: skip


def _refund(event: Any, at: datetime, currencies: frozenset[str] | None) -> PurchaseRefunded | None:
    amount = _money(event.amount, event.currency, currencies)
    if amount is None or not event.order_id.isprintable():
        return None
    return trusted(
        PurchaseRefunded,
        {
            "event_id": event.event_id, "customer_id": event.customer_id, "occurred_at": at, "schema_version": 1,
            "type": "purchase.refunded", "order_id": event.order_id, "amount": amount, "currency": event.currency,
        },
    )  # fmt: skip


def _feedback(event: Any, at: datetime, _: frozenset[str] | None) -> FeedbackReceived | None:
    share = event.share_of_wallet
    if share is not None:
        if not _SHARE(share):
            return None
        share = Decimal(share)
    return trusted(
        FeedbackReceived,
        {
            "event_id": event.event_id, "customer_id": event.customer_id, "occurred_at": at, "schema_version": 1,
            "type": "feedback.received", "channel": event.channel, "nps": event.nps, "csat": event.csat,
            "expectation": event.expectation, "complaint": event.complaint, "formal": event.formal,
            "public": event.public, "audience": event.audience, "share_of_wallet": share,
        },
    )  # fmt: skip


_BUILDERS: dict[type, Any] = {
    _Registered: _registered,
    _Interest: _interest,
    _Erasure: _erasure,
    _Purchase: _purchase,
    _Refund: _refund,
    _Feedback: _feedback,
}
