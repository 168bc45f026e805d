"""A customer as marketers and the query API see them: every dimension, the figures, recent decisions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from engine.loyalty.figures import figures
from engine.loyalty.policy import Policy
from engine.loyalty.state import CustomerState


def view(state: CustomerState, policy: Policy, at: datetime | None = None) -> dict[str, Any]:
    """JSON-ready view of a customer; figures as of `at` (default: the customer's own clock, never earlier)."""
    moment = state.clock if at is None else max(at, state.clock)
    f = figures(state, moment, policy)
    return {
        "customer_id": state.customer_id,
        **dimensions(state),
        "as_of": moment.isoformat(),
        "figures": {
            "purchases_in_window": f.purchases_in_window,
            "median_gap_days": None if f.median_gap_days is None else round(f.median_gap_days, 1),
            "window_spend": str(f.window_spend),
            "base_currency": policy.currency.base,
            "days_since_last_purchase": f.days_since_last_purchase,
            "satisfaction_score": f.satisfaction_score(policy),
            "positive_experiences": f.positives,
            "negative_experiences": f.negatives,
            "converted_referrals": state.converted_referrals,
            "audience": state.audience,
            "share_of_wallet": None if state.share_of_wallet is None else str(state.share_of_wallet),
            "formal_complaints": state.formal_complaints,
            "informal_complaints": state.informal_complaints,
        },
        "recent_decisions": list(state.decisions),
    }


def dimensions(state: CustomerState) -> dict[str, Any]:
    """A state's dimensions as its view shows them (what audiences filter on: engine/loyalty/audience.py)."""
    return {
        "step": state.step or "possible",
        "activity": state.activity,
        "frequency": state.frequency,
        "volume": state.volume,
        "satisfaction": state.satisfaction,
        "influence": state.influence,
        "relationship": state.relationship,
        "kind": state.kind,
        "permanent": state.permanent,
        "risk": state.risk,
    }
