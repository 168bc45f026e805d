"""The loyalty core: `evolve` applies one event, `sweep` applies the passage of time; both are pure."""

from __future__ import annotations

import math
from datetime import UTC, datetime, time, timedelta

from engine.loyalty.evaluation import evaluate, evaluate_volume, grant_referral_reward
from engine.loyalty.facts import already_applied, apply
from engine.loyalty.outcome import Outcome, Recorder, ReferralCredited
from engine.loyalty.policy import Policy
from engine.loyalty.population import Population
from engine.loyalty.state import CustomerState
from schemas.events import ErasureRequested, InboundEvent

MAX_CATCH_UP_STEPS = 1000


def evolve(state: CustomerState | None, event: InboundEvent | ReferralCredited, policy: Policy) -> Outcome:
    """The next state after `event`, with the transitions, perks and referral credits it causes.

    A repeated event id changes nothing. Time-driven changes due before the event are caught up first,
    each at its own day boundary, so the result does not depend on how often sweeps ran.
    """
    if isinstance(event, ErasureRequested):
        return Outcome(None)  # the whole state goes: nothing about the customer is kept
    if state is not None and (event.event_id in state.seen_ids or already_applied(state, event)):  # type: ignore[arg-type]
        return Outcome(state, duplicate=True)
    out = Recorder()
    if state is None:
        state = CustomerState(customer_id=event.customer_id, clock=event.occurred_at)
    else:
        state = state.copy()
        _catch_up(state, event.occurred_at, policy, out)
    credit = apply(state, event, policy)
    if credit is not None:
        out.referrals.append(credit)
    if event.occurred_at > state.clock:
        state.clock = event.occurred_at
    state.seen_ids.append(event.event_id)
    del state.seen_ids[: -policy.dedup_memory]
    evaluate(state, state.clock, event.event_id, policy, out)
    if isinstance(event, ReferralCredited):
        grant_referral_reward(state, state.clock, event.event_id, policy, out)
    state.due = next_due(state, policy)
    return out.outcome(state)


def sweep(state: CustomerState, now: datetime, policy: Policy, population: Population | None = None) -> Outcome:
    """What the passage of time up to `now` causes; with a population, volume is classified too."""
    state = state.copy()
    out = Recorder()
    _catch_up(state, now, policy, out)
    if population is not None:
        evaluate_volume(state, population, f"sweep:{now.date().isoformat()}", policy, out)
    return out.outcome(state)


def next_due(state: CustomerState, policy: Policy) -> datetime | None:
    """The next day boundary at which the passage of time could change something (volume aside)."""
    # A moment m is evaluated at boundary_after(m); that boundary is still ahead of the clock iff m is
    # later than the last midnight at or before the clock.
    floor = day_start(state.clock)
    window = timedelta(days=policy.ladder.window_days)
    candidates: list[datetime] = []
    for _, bought, amount, refunded in state.purchases:  # in time order: the first one ahead is enough
        if refunded < amount and bought + window > floor:
            candidates.append(bought + window)
            break
    for feedback in state.feedback:
        if any(feedback[1:]) and feedback[0] + window > floor:
            candidates.append(feedback[0] + window)
            break
    if state.last_interest_at is not None:
        candidates.append(state.last_interest_at + window)
    if state.last_purchase_at is not None:
        inactive = policy.classification.inactive_after_days
        candidates.append(state.last_purchase_at + timedelta(days=inactive + 1))
        if state.step in {"habitual", "exclusive"}:
            gap = state.median_gap_days  # kept by the last evaluation, which ran at `clock`
            if gap is not None:
                overdue = math.floor(gap * float(policy.ladder.at_risk_overdue_factor)) + 1
                candidates.append(state.last_purchase_at + timedelta(days=overdue))
    if state.demotion_pending_since is not None:
        candidates.append(state.demotion_pending_since + timedelta(days=policy.ladder.demotion_grace_days))
    if state.strong_since is not None and not state.permanent:
        candidates.append(state.strong_since + timedelta(days=policy.classification.permanent_after_days))
    ahead = [moment for moment in candidates if moment > floor]
    return boundary_after(min(ahead)) if ahead else None


def day_start(moment: datetime) -> datetime:
    """Midnight UTC at or before `moment`."""
    return datetime.combine(moment.astimezone(UTC).date(), time(), tzinfo=UTC)


def boundary_after(moment: datetime) -> datetime:
    """The first UTC midnight at or after `moment`."""
    midnight = day_start(moment)
    return midnight if midnight == moment else midnight + timedelta(days=1)


def _catch_up(state: CustomerState, until: datetime, policy: Policy, out: Recorder) -> None:
    """Evaluate every day boundary up to `until` at which something was due, in order."""
    for _ in range(MAX_CATCH_UP_STEPS):
        due = state.due  # kept up to date after every change of the state
        if due is None or due > until:
            return
        state.clock = due
        evaluate(state, due, f"sweep:{due.date().isoformat()}", policy, out)
        state.due = next_due(state, policy)
