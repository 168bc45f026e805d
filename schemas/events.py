"""Escalera's event contracts: the inbound events platforms publish and the outbound events Escalera emits."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Literal

from iso4217 import Currency
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    WithJsonSchema,
)

SCHEMA_VERSION = 1

# ISO 4217 codes from the maintained `iso4217` package, less the codes that are not money
# (XTS is reserved for testing, XXX means "no currency").
ISO_CURRENCIES: frozenset[str] = frozenset(c.code for c in Currency) - {"XTS", "XXX"}

Id = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, pattern=r"^(?:[^\p{C}\p{Z}]| )+$"),
]
"""An identifier: 1–128 printable characters (no control, format or separator characters but space)."""


def _to_utc(value: datetime) -> datetime:
    return value if value.tzinfo is UTC else value.astimezone(UTC)


# Strict: from JSON only an RFC 3339 string is a timestamp (not a number of seconds).
Timestamp = Annotated[AwareDatetime, Field(strict=True), AfterValidator(_to_utc)]
"""An RFC 3339 timestamp with an offset (naive ones are refused), normalised to UTC."""

# A Literal keeps the check inside pydantic-core and gives producers an `enum` in the JSON Schema.
if TYPE_CHECKING:
    CurrencyCode = str
else:
    CurrencyCode = Literal[tuple(sorted(ISO_CURRENCIES))]
# The published JSON Schemas say exactly what the decoder accepts, for numbers and for decimal strings.
_POSITIVE_DECIMAL = r"^(?=.*[1-9])\d{1,14}(\.\d{1,4})?$"
_SHARE_DECIMAL = r"^(0(\.\d{1,4})?|1(\.0{1,4})?)$"
Money = Annotated[
    Decimal,
    Field(gt=0, max_digits=18, decimal_places=4, allow_inf_nan=False),
    WithJsonSchema(
        {
            "description": "A positive amount, as a decimal string (preferred, exact) or a JSON number; "
            "at most 4 decimal places.",
            "anyOf": [
                {"type": "string", "pattern": _POSITIVE_DECIMAL},
                {"type": "number", "exclusiveMinimum": 0, "multipleOf": 0.0001},
            ],
        }
    ),
]
Share = Annotated[
    Decimal,
    Field(ge=0, le=1, max_digits=6, decimal_places=4, allow_inf_nan=False),
    WithJsonSchema(
        {
            "description": "A share between 0 and 1, as a decimal string or a JSON number.",
            "anyOf": [
                {"type": "string", "pattern": _SHARE_DECIMAL},
                {"type": "number", "minimum": 0, "maximum": 1},
            ],
        }
    ),
]

CustomerKind = Literal["final", "external", "internal"]
InterestSignal = Literal["cart", "wishlist", "newsletter", "quote_request", "visit"]
FeedbackChannel = Literal["survey", "review", "support", "complaint_form", "social"]
Expectation = Literal["exceeded", "met", "below"]
Step = Literal["possible", "potential", "buyer", "occasional", "habitual", "exclusive", "propagandist"]
STEPS: tuple[Step, ...] = (
    "possible",
    "potential",
    "buyer",
    "occasional",
    "habitual",
    "exclusive",
    "propagandist",
)
PerkType = Literal[
    "welcome_offer",
    "priority_service",
    "special_offer",
    "early_access",
    "tailored_service",
    "referral_reward",
    "raffle_entry",
    "participation_invite",
    "service_recovery",
    "membership_offer",
    "win_back_offer",
    "retention_offer",
    "personal_attention",
]
Dimension = Literal["activity", "frequency", "volume", "satisfaction", "influence", "relationship", "permanent", "risk"]
RejectionReason = Literal[
    "invalid_utf8",
    "invalid_json",
    "not_an_object",
    "too_large",
    "unknown_type",
    "unsupported_version",
    "missing_field",
    "invalid_field",
    "timestamp_in_future",
    "unknown_currency",
]
Evidence = dict[str, str | int | bool | None]


class Event(BaseModel):
    """Fields every event carries."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: Id = Field(description="Unique id of this event; a repeated id is a redelivery and changes nothing.")
    customer_id: Id = Field(description="The customer the event is about; also the Kafka record key.")
    occurred_at: Timestamp = Field(description="When it happened (event time), RFC 3339 with an offset.")
    schema_version: Literal[1] = Field(description="Version of this contract; only 1 exists.")


EventBase = Event
"""The contract's name for the common base of every inbound and decision event."""


# ---- inbound --------------------------------------------------------------------------------------


class Traits(BaseModel):
    """What makes a potential customer (seed 004): need, purchasing power, authority to decide."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    has_need: bool | None = Field(None, description="Needs what we sell.")
    can_afford: bool | None = Field(None, description="Has the purchasing power.")
    can_decide: bool | None = Field(None, description="Has the authority to decide the purchase.")


class CustomerRegistered(Event):
    """A customer became known to the platform."""

    type: Literal["customer.registered"]
    kind: CustomerKind = Field("final", description="final user, external (intermediary) or internal customer.")
    traits: Traits | None = Field(None, description="Need, purchasing power and authority, where known.")
    referred_by: Id | None = Field(None, description="customer_id of the customer who referred this one.")


class InterestShown(Event):
    """A customer showed interest: cart, wishlist, newsletter, quote request or visit."""

    type: Literal["customer.interest_shown"]
    signal: InterestSignal = Field(description="How the interest showed.")


class ErasureRequested(Event):
    """The customer asked to be forgotten."""

    type: Literal["customer.erasure_requested"]


class PurchaseCompleted(Event):
    """A purchase was completed and paid."""

    type: Literal["purchase.completed"]
    order_id: Id = Field(description="The order; refunds name it.")
    amount: Money = Field(description="Amount paid, > 0, in `currency`.")
    currency: CurrencyCode = Field(description="ISO 4217 code; it needs a rate in the policy.")
    category: Annotated[str, StringConstraints(max_length=128)] | None = Field(None, description="Product category.")
    referred_by: Id | None = Field(
        None, description="Referrer, if named at the first purchase; credited when this purchase converts."
    )


class PurchaseRefunded(Event):
    """All or part of a purchase was refunded."""

    type: Literal["purchase.refunded"]
    order_id: Id = Field(description="The order refunded.")
    amount: Money = Field(description="Amount refunded, > 0; the whole amount makes the purchase not count.")
    currency: CurrencyCode = Field(description="ISO 4217 code.")


class FeedbackReceived(Event):
    """Feedback from a survey, review, support contact, complaint form or social post."""

    type: Literal["feedback.received"]
    channel: FeedbackChannel = Field(description="Where the feedback came from.")
    nps: Annotated[int, Field(ge=0, le=10)] | None = Field(None, description="Net Promoter Score answer, 0–10.")
    csat: Annotated[int, Field(ge=1, le=5)] | None = Field(None, description="Satisfaction score, 1–5.")
    expectation: Expectation | None = Field(None, description="Against expectations: exceeded, met or below.")
    complaint: bool = Field(False, description="This is a complaint.")
    formal: bool = Field(False, description="A complaint made through a formal channel.")
    public: bool = Field(False, description="A public statement (a review, a post).")
    audience: Annotated[int, Field(ge=0)] = Field(0, description="How many people the public statement reaches.")
    share_of_wallet: Share | None = Field(
        None, description="Share of this kind of purchase the customer makes with us, 0–1."
    )


InboundEvent = Annotated[
    CustomerRegistered | InterestShown | ErasureRequested | PurchaseCompleted | PurchaseRefunded | FeedbackReceived,
    Field(discriminator="type"),
]
INBOUND_TYPES: dict[str, type[Event]] = {
    "customer.registered": CustomerRegistered,
    "customer.interest_shown": InterestShown,
    "customer.erasure_requested": ErasureRequested,
    "purchase.completed": PurchaseCompleted,
    "purchase.refunded": PurchaseRefunded,
    "feedback.received": FeedbackReceived,
}
inbound_adapter: TypeAdapter[InboundEvent] = TypeAdapter(InboundEvent)


# ---- outbound -------------------------------------------------------------------------------------


class Decision(Event):
    """An outbound event caused by an inbound event or by the passage of time, with its explanation."""

    policy_version: str = Field(description="Hash of the effective loyalty policy.")
    caused_by: str = Field(description="event_id of the cause, or sweep:<YYYY-MM-DD> for time-driven ones.")
    rule: str = Field(description="Machine name of the rule that decided.")
    explanation: str = Field(description="The decision in words a marketer can read.")
    evidence: Evidence = Field(description="The figures that decided it, with their thresholds.")


class PerkGranted(Decision):
    """A perk was granted to a customer."""

    type: Literal["perk.granted"]
    perk_id: str = Field(description="Deterministic id (equal to event_id): the same inputs give the same id.")
    perk: PerkType = Field(description="What the customer gets.")


class PerkRevoked(Decision):
    """A perk granted earlier was taken back: what earned it was undone within the policy's hold (the purchase that
    earned a welcome or step perk fully refunded, or the first purchase of a referred friend fully refunded). It
    names the revoked perk by its `perk_id` (the `perk_id` of its `perk.granted`); `occurred_at` is the refund's
    event time and `caused_by` the refund's event id."""

    type: Literal["perk.revoked"]
    perk_id: str = Field(description="The perk_id of the `perk.granted` this takes back.")
    perk: PerkType = Field(description="What the customer no longer gets.")


class StepChanged(Decision):
    """A customer moved on the loyalty ladder."""

    type: Literal["customer.step_changed"]
    from_step: Step | None = Field(description="The step before (null when first placed).")
    to_step: Step = Field(description="The step now.")


class ClassificationChanged(Decision):
    """One of a customer's classifications changed."""

    type: Literal["customer.classification_changed"]
    dimension: Dimension = Field(description="Which classification changed.")
    from_value: str | None = Field(description="The value before (null when first set).")
    to_value: str = Field(description="The value now.")


class CustomerErased(Event):
    """A customer was erased at their request: forget them. Sent once per `customer.erasure_requested`, to
    `loyalty.perks` and to `loyalty.transitions` alike (the same record, one event_id, keyed by the customer id),
    since the consumers of each topic hold copies keyed by the customer's id. It carries the id and nothing else
    about the customer; `occurred_at` is the request's event time.

    Sent for every request, whether or not Escalera still held the customer: the notice is derived from the
    request alone (its event_id comes from the customer id and the request's event_id), so `escalera replay` and
    the workers send the same one, a redelivered request sends it again under the same id (consumers
    de-duplicate), and nothing about an erased customer has to be kept to decide it. A consumer may hold copies
    Escalera no longer knows of (tables started afresh, a seed replaced); an unknown id costs it nothing."""

    type: Literal["customer.erased"]
    caused_by: str = Field(description="event_id of the `customer.erasure_requested` that erased the customer.")


ERASED = "customer.erased"
OutboundStream = Literal["perks", "transitions"]
_PERKS = frozenset({"perk.granted", "perk.revoked"})


def outbound_streams(event_type: str) -> tuple[OutboundStream, ...]:
    """The outbound topics a decision or notice goes to: a perk granted or revoked to the perks topic, an erasure
    notice to both, anything else (a step or classification change) to the transitions topic."""
    if event_type in _PERKS:
        return ("perks",)
    if event_type == ERASED:
        return ("perks", "transitions")
    return ("transitions",)


class RejectionSource(BaseModel):
    """Where a rejected payload came from: a Kafka record or a line of a file."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    line: int | None = None


class EventRejected(BaseModel):
    """A dead letter: a payload Escalera could not accept, with the reason."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: Id
    type: Literal["event.rejected"]
    customer_id: Id | None = Field(description="The record key, when there was one.")
    occurred_at: Timestamp
    schema_version: Literal[1]
    reason: RejectionReason
    message: str = Field(description="What is wrong, naming the field.")
    payload: str = Field(description="The raw bytes as UTF-8 (backslash-escaped where invalid), truncated.")
    payload_truncated: bool
    payload_size: Annotated[int, Field(ge=0)] = Field(description="Size of the raw payload in bytes.")
    source: RejectionSource


OutboundEvent = Annotated[
    PerkGranted | PerkRevoked | StepChanged | ClassificationChanged | CustomerErased | EventRejected,
    Field(discriminator="type"),
]
outbound_adapter: TypeAdapter[OutboundEvent] = TypeAdapter(OutboundEvent)
