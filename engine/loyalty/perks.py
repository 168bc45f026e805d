"""Perks (seed 001): their deterministic ids, and the limits every grant passes: the cooldown, the cap and its rule's
budget. What triggers them is the policy's `perk_rules` (engine/loyalty/perk_rules.py)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from engine.loyalty.budgets import KEPT_AFTER, BudgetLedger
from engine.loyalty.perk_rules import Budget
from engine.loyalty.policy import Policy
from engine.loyalty.state import CustomerState
from schemas.events import PerkType

SuppressionReason = Literal["cooldown", "cap", "window", "condition", "budget"]


@dataclass(frozen=True, slots=True)
class SuppressedPerk:
    """A perk a rule called for but held back: by the limits (cooldown, cap, the rule's budget) or by the rule's own
    window or conditions. Counted and explained, never lost silently."""

    perk: str
    rule: str
    reason: SuppressionReason
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
    state: CustomerState,
    perk: PerkType,
    rule: str,
    at: datetime,
    caused_by: str,
    policy: Policy,
    budget: Budget | None = None,
    ledger: BudgetLedger | None = None,
) -> str | SuppressedPerk:
    """Grant `perk` (record it in `state`, return its id) unless the cooldown, the cap or the rule's `budget` (counted
    in `ledger`) holds it back. The budget is asked last: a perk the cooldown or the cap holds back spends none."""
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
    if budget is not None:
        over = _over_budget(state.customer_id, perk, rule, at, pid, budget, ledger)
        if over is not None:
            return SuppressedPerk(perk, rule, "budget", pid, state.customer_id, at, caused_by, over)
    state.perks.append((perk, at))
    return pid


def _over_budget(
    customer_id: str, perk: str, rule: str, at: datetime, pid: str, budget: Budget, ledger: BudgetLedger | None
) -> str | None:
    """Why the budget holds the grant back, or None once the ledger counted it (see engine/loyalty/budgets.py)."""
    limit = f"rule {rule} grants at most {budget.words(perk)} across all customers"
    if ledger is None:
        return f"Held back: {limit}, and nothing counts its grants here (no budget ledger)."
    period = budget.period_of(at)
    taken = ledger.take(customer_id, budget.key(rule, perk), period, at, budget.max, pid)
    if taken.result == "taken":
        return None
    label = budget.label(period)
    if taken.result == "spent":
        return f"Held back: {limit}; the {taken.share} of them for this customer's partition are spent for {label}."
    closed = f"the budget for {label} is closed (grants are counted until {KEPT_AFTER.days} days after a period ends)"
    return f"Held back: {limit}, and {closed}."
