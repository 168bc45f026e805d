"""Small builders of inbound events and a driver that feeds them to the core, for the loyalty tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import count
from typing import Any

from engine.loyalty import DEFAULT_POLICY, CustomerState, Outcome, Policy, evolve
from schemas.events import (
    CustomerRegistered,
    ErasureRequested,
    FeedbackReceived,
    InboundEvent,
    InterestShown,
    PurchaseCompleted,
    PurchaseRefunded,
)

T0 = datetime(2025, 1, 1, 10, 0, tzinfo=UTC)
_ids = count()


def at(days: float) -> datetime:
    return T0 + timedelta(days=days)


def _common(customer: str, days: float) -> dict[str, Any]:
    return {"event_id": f"e-{next(_ids)}", "customer_id": customer, "occurred_at": at(days), "schema_version": 1}


def purchase(customer: str, days: float, amount: str = "20", currency: str = "EUR", **extra: Any) -> PurchaseCompleted:
    common = _common(customer, days)
    return PurchaseCompleted(
        type="purchase.completed", order_id=f"o-{common['event_id']}", amount=Decimal(amount), currency=currency,
        **common, **extra,
    )  # fmt: skip


def refund(customer: str, days: float, order_id: str, amount: str = "20") -> PurchaseRefunded:
    return PurchaseRefunded(
        type="purchase.refunded", order_id=order_id, amount=Decimal(amount), currency="EUR", **_common(customer, days)
    )


def feedback(customer: str, days: float, **fields: Any) -> FeedbackReceived:
    fields.setdefault("channel", "survey")
    return FeedbackReceived(type="feedback.received", **_common(customer, days), **fields)


def register(customer: str, days: float, **fields: Any) -> CustomerRegistered:
    return CustomerRegistered(type="customer.registered", **_common(customer, days), **fields)


def interest(customer: str, days: float, signal: str = "cart") -> InterestShown:
    return InterestShown(type="customer.interest_shown", signal=signal, **_common(customer, days))  # type: ignore[arg-type]


def erase(customer: str, days: float) -> ErasureRequested:
    return ErasureRequested(type="customer.erasure_requested", **_common(customer, days))


def run(events: list[InboundEvent], policy: Policy = DEFAULT_POLICY) -> tuple[CustomerState | None, list[Outcome]]:
    """Feed events of one customer in order; return the final state and every outcome."""
    state: CustomerState | None = None
    outcomes = []
    for event in events:
        outcome = evolve(state, event, policy)
        outcomes.append(outcome)
        state = outcome.state
    return state, outcomes


def perks_of(outcomes: list[Outcome]) -> list[str]:
    return [e.perk for o in outcomes for e in o.emitted if e.type == "perk.granted"]


def every_n_days(customer: str, purchases: int, gap: float, start: float = 0) -> list[InboundEvent]:
    return [purchase(customer, start + i * gap) for i in range(purchases)]
