"""How each inbound event changes a customer's facts (never their classifications: the rules do that)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import TypeVar

from engine.loyalty.outcome import ReferralCredited, ReferralReverted
from engine.loyalty.policy import Policy
from engine.loyalty.state import CustomerState, Feedback, Purchase
from schemas.events import (
    CustomerRegistered,
    FeedbackReceived,
    InterestShown,
    PurchaseCompleted,
    PurchaseRefunded,
)

T = TypeVar("T")
_ZERO = Decimal(0)

Fact = CustomerRegistered | InterestShown | PurchaseCompleted | PurchaseRefunded | FeedbackReceived


def already_applied(state: CustomerState, event: Fact) -> bool:
    """A purchase whose order is already recorded changes nothing, whatever its event id."""
    if isinstance(event, PurchaseCompleted):
        order = event.order_id
        for purchase in state.purchases:
            if purchase[0] == order:
                return True
    return False


def apply(
    state: CustomerState, event: Fact | ReferralCredited | ReferralReverted, policy: Policy
) -> ReferralCredited | None:
    """Record the event's facts on `state` (in place); return a referral credit for another customer, if any. (A
    referral reversal is applied by engine/loyalty/revocation.py.)"""
    if isinstance(event, PurchaseCompleted):
        return _purchase(state, event, policy)
    if isinstance(event, PurchaseRefunded):
        _refund(state, event, policy)
    elif isinstance(event, FeedbackReceived):
        _feedback(state, event, policy)
    elif isinstance(event, InterestShown):
        if state.last_interest_at is None or event.occurred_at > state.last_interest_at:
            state.last_interest_at = event.occurred_at
    elif isinstance(event, CustomerRegistered):
        state.kind = event.kind
        if event.traits is not None:
            state.has_need = bool(event.traits.has_need)
            state.can_afford = bool(event.traits.can_afford)
            state.can_decide = bool(event.traits.can_decide)
        state.referred_by = event.referred_by or state.referred_by
    elif isinstance(event, ReferralCredited):
        state.converted_referrals += 1
    return None


def _purchase(state: CustomerState, event: PurchaseCompleted, policy: Policy) -> ReferralCredited | None:
    purchases = state.purchases
    purchases.append((event.order_id, event.occurred_at, policy.to_base(event.amount, event.currency), _ZERO))
    if len(purchases) > 1 and purchases[-2][1] > event.occurred_at:  # a late event: keep time order
        purchases.sort(key=_purchase_time)
    _trim(state.purchases, _purchase_time, state.clock - policy.spans.window, policy.max_tracked_purchases)
    if state.last_purchase_at is None or event.occurred_at > state.last_purchase_at:
        state.last_purchase_at = event.occurred_at
    first = not state.has_purchased
    state.has_purchased = True
    referrer = event.referred_by or state.referred_by
    if not first or referrer is None or referrer == state.customer_id:
        return None
    return ReferralCredited(
        event_id=credit_id(event.event_id),
        customer_id=referrer,
        referred_customer_id=state.customer_id,
        occurred_at=event.occurred_at,
        caused_by=event.event_id,
    )


def credit_id(purchase_id: str) -> str:
    """The id of the referral credit a referred customer's first purchase (its event id) sends their referrer."""
    digest = hashlib.sha256(f"referral|{purchase_id}".encode()).hexdigest()[:24]
    return f"ref-{digest}"


def fully_refunded(state: CustomerState, order_id: str) -> bool:
    """Whether the purchase of `order_id` is recorded and refunded in full (False when it is not recorded)."""
    for order, _, amount, refunded in state.purchases:
        if order == order_id:
            return refunded >= amount
    return False


def _purchase_time(purchase: Purchase) -> datetime:
    return purchase[1]


def _feedback_time(feedback: Feedback) -> datetime:
    return feedback[0]


def _refund(state: CustomerState, event: PurchaseRefunded, policy: Policy) -> None:
    refund = policy.to_base(event.amount, event.currency)
    for index, (order, at, amount, refunded) in enumerate(state.purchases):
        if order == event.order_id:
            state.purchases[index] = (order, at, amount, min(amount, refunded + refund))
            return


def _feedback(state: CustomerState, event: FeedbackReceived, policy: Policy) -> None:
    x = policy.experience
    negative = (
        (event.nps is not None and event.nps <= x.negative_max_nps)
        or (event.csat is not None and event.csat <= x.negative_max_csat)
        or event.expectation == "below"
        or event.complaint
    )
    positive = not negative and (
        (event.nps is not None and event.nps >= x.positive_min_nps)
        or (event.csat is not None and event.csat >= x.positive_min_csat)
        or event.expectation in {"exceeded", "met"}
    )
    top_nps = event.nps is not None and event.nps >= policy.ladder.propagandist_min_nps
    state.feedback.append(
        (
            event.occurred_at,
            positive,
            negative,
            event.expectation == "exceeded",
            top_nps,
            event.public and positive,
        )
    )
    if len(state.feedback) > 1 and state.feedback[-2][0] > event.occurred_at:  # a late event: keep time order
        state.feedback.sort(key=_feedback_time)
    _trim(state.feedback, _feedback_time, state.clock - policy.spans.window, policy.max_tracked_feedback)
    if event.public:
        state.audience = max(state.audience, event.audience)
    if event.share_of_wallet is not None:
        state.share_of_wallet = event.share_of_wallet
    if event.complaint:
        if event.formal:
            state.formal_complaints += 1
        else:
            state.informal_complaints += 1


def _trim(items: list[T], when: Callable[[T], datetime], start: datetime, cap: int) -> None:
    """Drop what left the window that begins after `start` (items are in time order), then the oldest beyond the cap:
    state stays bounded."""
    keep_from = 0
    while keep_from < len(items) and when(items[keep_from]) <= start:
        keep_from += 1
    del items[: max(keep_from, len(items) - cap)]
