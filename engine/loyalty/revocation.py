"""Revocation (issue 19): what a purchase earned is taken back when it is fully refunded within the policy's hold.

Two holds, both off by default (the policy's `perks`):

- `refund_hold_days` (R): a purchase fully refunded less than R days after it (event time, the refund's against the
  purchase's) takes back the perks granted because of it: those the `enters.<step>` rules granted with the purchase
  as their cause (a welcome_offer, the perks of a step it made the customer enter), each published as a
  `perk.revoked` naming its `perk_id` (rule `refund.revokes`), and forgotten by the cooldown and cap. A referred
  friend's first purchase fully refunded within R undoes the conversion: the referrer is sent a `ReferralReverted`,
  their `converted_referrals` goes back down and the referral_reward that conversion granted is revoked (rule
  `referral.refunded`).
- `referral_hold_days` (H): a referral credit waits H days after the conversion (the friend's first purchase) before
  it counts: at the first day boundary at least H days after it, the referrer's `converted_referrals` goes up and
  they are evaluated and rewarded as an immediate credit would have them (influence, the propagandist step and its
  perks, the `referral.converted` reward), caused by the credit as then: the same perk and transition ids, dated
  that midnight. A full refund of the friend's purchase within H cancels the waiting credit: nothing was counted
  or granted, nothing is revoked.

A conversion is therefore held for the longer of the two (`Spans.conversion_hold`). What may still be undone is kept
in the state's `held` (engine/loyalty/state.py), for its hold only: pruned by the customer's clock once the hold is
over (a waiting reward stays until granted). Whatever is re-evaluated after (the refunding customer's step and
classifications, the referrer's influence and step) changes by the normal rules, with their normal transitions.

Revocations are decided from the customer's own state: the refund's customer decides whether the conversion is
undone, and the referrer applies it (decrementing the count even when their own memory of the reward is already
pruned: then nothing is revoked). A revocation gives back no budget (the perk rules' budgets count grants).
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from engine.loyalty.evaluation import evaluate, grant_referral_reward, revoke_perks
from engine.loyalty.facts import credit_id, fully_refunded
from engine.loyalty.outcome import Recorder, ReferralCredited, ReferralReverted
from engine.loyalty.policy import Policy
from engine.loyalty.state import CustomerState, Held
from schemas.events import Evidence, PurchaseCompleted, PurchaseRefunded

REFUND_REVOKES = "refund.revokes"
REFERRAL_REFUNDED = "referral.refunded"
_NONE = timedelta(0)


def hold_purchase(
    state: CustomerState, event: PurchaseCompleted, credit: ReferralCredited | None, policy: Policy
) -> None:
    """Hold a purchase just applied (before it is evaluated, so that what it earns is noted against it): for the
    refund hold, and for the conversion hold when it converted a referral (`credit`)."""
    referrer = None if credit is None else credit.customer_id
    if referrer is not None or policy.spans.refund_hold > _NONE:
        state.held.append((event.event_id, event.occurred_at, event.order_id, referrer, False, ()))


def waits(policy: Policy) -> bool:
    """Whether a referral credit waits for the referral hold before it counts."""
    return policy.spans.referral_hold > _NONE


def hold_credit(state: CustomerState, credit: ReferralCredited, pending: bool) -> None:
    """Hold a referral credit on the referrer: applied (what it earns is noted against it), or `pending`, waiting
    for the referral hold (not applied: `release_credits` applies it)."""
    state.held.append((credit.event_id, credit.occurred_at, None, None, pending, ()))


def may_undo(state: CustomerState, event: PurchaseRefunded) -> bool:
    """Whether the refund's purchase is held and not yet fully refunded, before the refund is applied (only then
    may `undo_purchase` take anything back)."""
    order = event.order_id
    return any(entry[2] == order for entry in state.held) and not fully_refunded(state, order)


def undo_purchase(
    state: CustomerState, event: PurchaseRefunded, policy: Policy, out: Recorder
) -> ReferralReverted | None:
    """After a refund is applied: if it made a held purchase fully refunded, revoke what the purchase earned within
    the refund hold, and return the reversal of the referral it converted within the conversion hold (if any)."""
    order_id = event.order_id
    held = state.held
    index = next((i for i, entry in enumerate(held) if entry[2] == order_id), None)
    if index is None or not fully_refunded(state, order_id):
        return None
    cause, bought, _, referrer, _, earned = held.pop(index)  # (fully refunded: nothing more of it can be undone)
    spans = policy.spans
    after = event.occurred_at - bought
    if earned and after < spans.refund_hold:
        days, hold = _days(after), policy.perks.refund_hold_days
        text = (
            f"The purchase that earned it (order {order_id}, {bought.date().isoformat()}) was fully refunded "
            f"{days} day{'' if days == 1 else 's'} later, within the {hold}-day refund hold."
        )
        evidence: Evidence = {
            "order_id": order_id,
            "purchased_at": bought.isoformat(),
            "hold_days": hold,
            "refunded_after_days": days,
        }
        revoke_perks(state, event.occurred_at, event.event_id, earned, REFUND_REVOKES, (text, evidence), policy, out)
    if referrer is None or after >= spans.conversion_hold:
        return None
    credit = credit_id(cause)
    digest = hashlib.sha256(f"referral-reverted|{credit}|{event.event_id}".encode()).hexdigest()[:24]
    return ReferralReverted(
        event_id=f"unref-{digest}",
        customer_id=referrer,
        referred_customer_id=state.customer_id,
        occurred_at=event.occurred_at,
        caused_by=event.event_id,
        credit_id=credit,
    )


def undo_referral(state: CustomerState, reverted: ReferralReverted, policy: Policy, out: Recorder) -> None:
    """On the referrer: the conversion no longer counts, and what it earned (if still remembered: the
    `referral.converted` reward, the perks of the steps it made them enter) is revoked; a credit still waiting for
    the referral hold is dropped (it never counted)."""
    held = state.held
    index = next((i for i, entry in enumerate(held) if entry[0] == reverted.credit_id), None)
    if index is not None and held[index][4]:
        del held[index]  # waiting: never counted, nothing granted
        return
    state.converted_referrals = max(0, state.converted_referrals - 1)
    earned = () if index is None else held.pop(index)[5]
    if earned:
        friend = reverted.referred_customer_id
        text = (
            f"The first purchase of the customer they referred ({friend}) was fully refunded within the hold: the "
            f"referral no longer counts ({state.converted_referrals} converted so far)."
        )
        evidence: Evidence = {"referred_customer_id": friend, "converted_referrals": state.converted_referrals}
        why = (text, evidence)
        revoke_perks(state, reverted.occurred_at, reverted.caused_by, earned, REFERRAL_REFUNDED, why, policy, out)


def release_credits(state: CustomerState, policy: Policy, out: Recorder) -> None:
    """At a day boundary (the state's clock): apply each referral credit whose hold has passed, as an immediate
    credit is applied (caused by the credit: the same perk and transition ids)."""
    held, at = state.held, state.clock
    hold = policy.spans.referral_hold
    for index in range(len(held)):
        cause, credited, order, referrer, pending, earned = held[index]
        if pending and credited + hold <= at:
            held[index] = (cause, credited, order, referrer, False, earned)
            state.converted_referrals += 1
            evaluate(state, at, cause, policy, out)
            grant_referral_reward(state, at, cause, policy, out, hold_days=policy.perks.referral_hold_days)


def prune(state: CustomerState, policy: Policy) -> None:
    """Forget what can no longer be undone at the state's clock (a waiting credit stays until applied)."""
    spans, clock = policy.spans, state.clock
    refund_hold, conversion_hold = spans.refund_hold, spans.conversion_hold
    state.held = [e for e in state.held if e[4] or clock - e[1] < _span(e, refund_hold, conversion_hold)]


def _span(entry: Held, refund_hold: timedelta, conversion_hold: timedelta) -> timedelta:
    """How long an entry may be undone: a conversion (a credit, or a purchase that converted) for the longer hold."""
    return conversion_hold if entry[2] is None or entry[3] is not None else refund_hold


def _days(span: timedelta) -> int:
    return max(0, span.days)
