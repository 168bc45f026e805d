"""The figures the rules read, computed from a customer's facts at one moment of event time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from engine.loyalty.policy import Policy
from engine.loyalty.state import CustomerState

DAY = 86_400.0
_ZERO = Decimal(0)


@dataclass(slots=True)
class Figures:
    """What the rolling window says about a customer at `at`."""

    at: datetime
    purchases_in_window: int  # purchases in the window that were not fully refunded
    window_spend: Decimal
    median_gap_days: float | None
    days_since_last_purchase: int | None
    interest_in_window: bool
    positives: int
    negatives: int
    delight_signal: bool
    top_nps: bool
    public_positive: bool

    def satisfaction_score(self, policy: Policy) -> int:
        """Positives minus the weight (12 by default) times negatives (seed 001)."""
        return self.positives - policy.classification.negative_weight * self.negatives


def figures(state: CustomerState, at: datetime, policy: Policy) -> Figures:
    """The customer's figures over the window that ends at `at` (purchases and feedback are kept in time order)."""
    start = at - policy.spans.window
    previous: datetime | None = None
    gaps: list[float] = []
    count = 0
    spend = _ZERO
    for _, bought, amount, refunded in state.purchases:
        if start < bought <= at and refunded < amount:
            if previous is not None:
                gaps.append((bought - previous).total_seconds() / DAY)
            previous = bought
            count += 1
            spend += amount - refunded
    positives = negatives = 0
    delight = top = public = False
    for moment, positive, negative, exceeded, top_nps, public_positive in state.feedback:
        if start < moment <= at:
            positives += positive
            negatives += negative
            delight = delight or exceeded or top_nps
            top = top or top_nps
            public = public or public_positive
    last = state.last_purchase_at
    interest = state.last_interest_at
    return Figures(
        at,
        count,
        spend,
        _median(gaps) if gaps else None,
        None if last is None else int((at - last).total_seconds() // DAY),
        interest is not None and start < interest <= at,
        positives,
        negatives,
        delight,
        top,
        public,
    )


def window_spend(state: CustomerState, at: datetime, policy: Policy) -> Decimal:
    """`figures(state, at, policy).window_spend`, alone (what a midnight's volume pass settles for many customers)."""
    start = at - policy.spans.window
    spend = _ZERO
    for _, bought, amount, refunded in state.purchases:
        if start < bought <= at and refunded < amount:
            spend += amount - refunded
    return spend


def _median(values: list[float]) -> float:
    """The middle value, or the mean of the two middle ones (as `statistics.median` computes it)."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
