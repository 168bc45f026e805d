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
    """The customer's figures over the window that ends at `at` (purchases and feedback are kept in time order)."""
    start = at - timedelta(days=policy.ladder.window_days)
    counted: list[datetime] = []
    spend = Decimal(0)
    for _, bought, amount, refunded in state.purchases:
        if start < bought <= at and refunded < amount:
            counted.append(bought)
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
    gaps = [(later - earlier).total_seconds() / DAY for earlier, later in pairwise(counted)]
    last = state.last_purchase_at
    return Figures(
        at=at,
        purchase_times=tuple(counted),
        window_spend=spend,
        median_gap_days=median(gaps) if gaps else None,
        days_since_last_purchase=None if last is None else int((at - last).total_seconds() // DAY),
        interest_in_window=state.last_interest_at is not None and start < state.last_interest_at <= at,
        positives=positives,
        negatives=negatives,
        delight_signal=delight,
        top_nps=top,
        public_positive=public,
    )
