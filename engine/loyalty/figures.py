"""The figures the rules read, computed from a customer's facts at one moment of event time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from statistics import median

from engine.loyalty.policy import Policy
from engine.loyalty.state import CustomerState

DAY = 86_400.0


@dataclass(frozen=True, slots=True)
class Figures:
    """What the rolling window says about a customer at `at`."""

    at: datetime
    purchase_times: tuple[datetime, ...]
    window_spend: Decimal
    median_gap_days: float | None
    days_since_last_purchase: int | None
    interest_in_window: bool
    positives: int
    negatives: int
    delight_signal: bool
    top_nps: bool
    public_positive: bool

    @property
    def purchases_in_window(self) -> int:
        """Purchases in the window that were not fully refunded."""
        return len(self.purchase_times)

    def satisfaction_score(self, policy: Policy) -> int:
        """Positives minus the weight (12 by default) times negatives (seed 001)."""
        return self.positives - policy.classification.negative_weight * self.negatives


def figures(state: CustomerState, at: datetime, policy: Policy) -> Figures:
    """The customer's figures over the window that ends at `at`."""
    start = at - timedelta(days=policy.ladder.window_days)
    counted = sorted(t for _, t, amount, refunded in state.purchases if start < t <= at and refunded < amount)
    spend = sum((a - r for _, t, a, r in state.purchases if start < t <= at and r < a), Decimal(0))
    gaps = [(later - earlier).total_seconds() / DAY for earlier, later in pairwise(counted)]
    window_feedback = [f for f in state.feedback if start < f[0] <= at]
    last = state.last_purchase_at
    return Figures(
        at=at,
        purchase_times=tuple(counted),
        window_spend=spend,
        median_gap_days=median(gaps) if gaps else None,
        days_since_last_purchase=None if last is None else int((at - last).total_seconds() // DAY),
        interest_in_window=state.last_interest_at is not None and start < state.last_interest_at <= at,
        positives=sum(1 for f in window_feedback if f[1]),
        negatives=sum(1 for f in window_feedback if f[2]),
        delight_signal=any(f[3] or f[4] for f in window_feedback),
        top_nps=any(f[4] for f in window_feedback),
        public_positive=any(f[5] for f in window_feedback),
    )
