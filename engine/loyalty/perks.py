"""Perks (seed 001): what triggers them, their deterministic ids, the cooldown and the cap."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from engine.loyalty.policy import Policy
from engine.loyalty.state import CustomerState
from schemas.events import PerkType

ON_ENTERING: dict[str, tuple[PerkType, ...]] = {
    "buyer": ("welcome_offer",),
    "habitual": ("priority_service", "special_offer"),
    "exclusive": ("early_access", "tailored_service"),
    "propagandist": ("referral_reward", "raffle_entry", "participation_invite"),
}


@dataclass(frozen=True, slots=True)
class SuppressedPerk:
    """A perk the rules called for but the limits held back: counted and explained, never lost silently."""

    perk: str
    rule: str
    reason: Literal["cooldown", "cap"]
    perk_id: str
    customer_id: str
    occurred_at: datetime
    caused_by: str
    explanation: str


def perk_id(customer_id: str, rule: str, perk: str, caused_by: str) -> str:
    """Derived only from its inputs, so a replay or a redelivery yields the same id."""
    digest = hashlib.sha256(f"{customer_id}|{rule}|{perk}|{caused_by}".encode()).hexdigest()
    return f"perk-{digest[:24]}"


def offer(
    state: CustomerState, perk: PerkType, rule: str, at: datetime, caused_by: str, policy: Policy
) -> str | SuppressedPerk:
    """Grant `perk` (record it, return its id) unless the cooldown or the cap holds it back."""
    limits, spans = policy.perks, policy.spans
    # (t > at - span: granted less than `span` before `at`; the memory is the longer of the two spans)
    remembered, cooling, capped = at - spans.perk_memory, at - spans.cooldown, at - spans.cap_period
    forgotten = cooling_down = False
    in_cap_period = 0
    for granted, t in state.perks:
        if t <= remembered:
            forgotten = True
            continue
        cooling_down = cooling_down or (granted == perk and t > cooling)
        in_cap_period += t > capped
    if forgotten:
        state.perks = [(p, t) for p, t in state.perks if t > remembered]
    pid = perk_id(state.customer_id, rule, perk, caused_by)
    if cooling_down:
        why = f"Held back: a {perk} was already granted in the last {limits.cooldown_days} days."
        return SuppressedPerk(perk, rule, "cooldown", pid, state.customer_id, at, caused_by, why)
    if in_cap_period >= limits.cap:
        why = f"Held back: {limits.cap} perks were already granted in the last {limits.cap_period_days} days."
        return SuppressedPerk(perk, rule, "cap", pid, state.customer_id, at, caused_by, why)
    state.perks.append((perk, at))
    return pid
