"""What one event or one sweep causes: the next state and everything to publish."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict

from engine.loyalty.perks import SuppressedPerk
from engine.loyalty.state import CustomerState
from schemas.events import ClassificationChanged, Id, PerkGranted, StepChanged, Timestamp

DecisionEvent = PerkGranted | StepChanged | ClassificationChanged
"""Any one of the published decision events (their common base is `schemas.events.Decision`)."""


class ReferralCredited(BaseModel):
    """Internal fact: a customer's referral converted (their friend's first purchase); addressed to the referrer."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: Id
    type: Literal["referral.credited"] = "referral.credited"
    customer_id: Id
    referred_customer_id: Id
    occurred_at: Timestamp
    caused_by: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """The next state (None after erasure), the decisions to publish, held-back perks, referral credits."""

    state: CustomerState | None
    emitted: tuple[DecisionEvent, ...] = ()
    suppressed: tuple[SuppressedPerk, ...] = ()
    referrals: tuple[ReferralCredited, ...] = ()
    duplicate: bool = False
    evaluated_spend: tuple[datetime, Decimal] | None = None  # the window spend its last evaluation found, and when


@dataclass(slots=True)
class Recorder:
    """Collects what an evaluation decides, in order."""

    emitted: list[DecisionEvent] = field(default_factory=list)
    suppressed: list[SuppressedPerk] = field(default_factory=list)
    referrals: list[ReferralCredited] = field(default_factory=list)
    late: datetime | None = None  # the time of the event being applied, when it came after later ones (see evolve)
    evaluated_spend: tuple[datetime, Decimal] | None = None  # set by each evaluation (see Outcome)

    def outcome(self, state: CustomerState | None, duplicate: bool = False) -> Outcome:
        """Freeze what was recorded."""
        emitted, suppressed, referrals = tuple(self.emitted), tuple(self.suppressed), tuple(self.referrals)
        return Outcome(state, emitted, suppressed, referrals, duplicate, self.evaluated_spend)
