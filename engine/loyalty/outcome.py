"""What one event or one sweep causes: the next state and everything to publish."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict

from engine.loyalty.budgets import BudgetLedger
from engine.loyalty.perks import SuppressedPerk
from engine.loyalty.state import CustomerState
from schemas.construct import trusted
from schemas.events import (
    ClassificationChanged,
    CustomerErased,
    ErasureRequested,
    Id,
    PerkGranted,
    PerkRevoked,
    StepChanged,
    Timestamp,
)

DecisionEvent = PerkGranted | StepChanged | ClassificationChanged | CustomerErased
"""Any one of the events the core publishes but revocations: the decisions (their common base is
`schemas.events.Decision`) and the erasure notice. (What the worker publishes: revocations are decided only under a
policy with holds, which it refuses until it publishes them: see `Outcome.published`.)"""
Published = DecisionEvent | PerkRevoked
"""Any one of the events the core publishes, revocations included (`Outcome.published`)."""


def derived_id(prefix: str, customer_id: str, what: str, value: str, caused_by: str) -> str:
    """An outbound event's id, derived only from its inputs: the same inputs give the same id (a transition's, an
    erasure notice's; a perk's is derived in `engine.loyalty.perks`)."""
    digest = hashlib.sha256(f"{customer_id}|{what}|{value}|{caused_by}".encode()).hexdigest()
    return f"{prefix}-{digest[:24]}"


def erasure_notice(request: ErasureRequested) -> CustomerErased:
    """The `customer.erased` notice an erasure request causes: the customer's id, the request's event time and
    event id, and nothing else (see `CustomerErased` for why every request gets one)."""
    values = {
        "event_id": derived_id("erased", request.customer_id, "customer", "erased", request.event_id),
        "customer_id": request.customer_id,
        "occurred_at": request.occurred_at,
        "schema_version": 1,
        "type": "customer.erased",
        "caused_by": request.event_id,
    }
    return trusted(CustomerErased, values)


class ReferralCredited(BaseModel):
    """Internal fact: a customer's referral converted (their friend's first purchase); addressed to the referrer."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: Id
    type: Literal["referral.credited"] = "referral.credited"
    customer_id: Id
    referred_customer_id: Id
    occurred_at: Timestamp
    caused_by: str


class ReferralReverted(BaseModel):
    """Internal fact: a converted referral was undone (the friend's first purchase fully refunded within the hold:
    engine/loyalty/revocation.py); addressed to the referrer, it takes back the conversion `credit_id` credited."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: Id
    type: Literal["referral.reverted"] = "referral.reverted"
    customer_id: Id
    referred_customer_id: Id
    occurred_at: Timestamp  # the refund's event time
    caused_by: str  # the refund's event id
    credit_id: str  # the event id of the `ReferralCredited` it undoes


@dataclass(frozen=True, slots=True)
class Outcome:
    """The next state (None after erasure), the decisions (or the erasure notice) to publish, held-back perks,
    referral credits, and referral reversals (each for its referrer, as credits are: only under a policy with holds)."""

    state: CustomerState | None
    emitted: tuple[DecisionEvent, ...] = ()
    suppressed: tuple[SuppressedPerk, ...] = ()
    referrals: tuple[ReferralCredited, ...] = ()
    duplicate: bool = False
    evaluated_spend: tuple[datetime, Decimal] | None = None  # the window spend its last evaluation found, and when
    reversals: tuple[ReferralReverted, ...] = ()
    revoked: tuple[PerkRevoked, ...] = ()  # perks taken back (engine/loyalty/revocation.py), decided together...
    revoked_at: int = 0  # ...before `emitted[revoked_at]` (what time caught up came before; the re-evaluation after)

    def published(self) -> tuple[Published, ...]:
        """Everything to publish, in the order decided: `emitted` with the revocations in their place."""
        if not self.revoked:
            return self.emitted
        at = self.revoked_at
        return (*self.emitted[:at], *self.revoked, *self.emitted[at:])


@dataclass(slots=True)
class Recorder:
    """Collects what an evaluation decides, in order."""

    emitted: list[DecisionEvent] = field(default_factory=list)
    suppressed: list[SuppressedPerk] = field(default_factory=list)
    referrals: list[ReferralCredited] = field(default_factory=list)
    reversals: list[ReferralReverted] = field(default_factory=list)
    revoked: list[PerkRevoked] = field(default_factory=list)
    revoked_at: int = 0  # how many were emitted before the revocations (all decided at one point of an event)
    late: datetime | None = None  # the time of the event being applied, when it came after later ones (see evolve)
    evaluated_spend: tuple[datetime, Decimal] | None = None  # set by each evaluation (see Outcome)
    ledger: BudgetLedger | None = None  # where grants are counted against the perk rules' budgets (loyalty.budgets)

    def outcome(self, state: CustomerState | None, duplicate: bool = False) -> Outcome:
        """Freeze what was recorded."""
        emitted, suppressed, referrals = tuple(self.emitted), tuple(self.suppressed), tuple(self.referrals)
        reversals, revoked = tuple(self.reversals), tuple(self.revoked)
        spend = self.evaluated_spend
        return Outcome(state, emitted, suppressed, referrals, duplicate, spend, reversals, revoked, self.revoked_at)
