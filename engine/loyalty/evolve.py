"""The loyalty core: `evolve` applies one event, `sweep` applies the passage of time; both are pure."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from engine.loyalty.budgets import BudgetLedger
from engine.loyalty.evaluation import evaluate, evaluate_volume, grant_referral_reward
from engine.loyalty.facts import already_applied, apply
from engine.loyalty.outcome import Outcome, Recorder, ReferralCredited, ReferralReverted, erasure_notice
from engine.loyalty.policy import Policy
from engine.loyalty.population import Population
from engine.loyalty.revocation import (
    hold_credit,
    hold_purchase,
    may_undo,
    prune,
    release_credits,
    undo_purchase,
    undo_referral,
    waits,
)
from engine.loyalty.state import CustomerState
from schemas.events import ErasureRequested, InboundEvent, PurchaseCompleted, PurchaseRefunded

Applied = InboundEvent | ReferralCredited | ReferralReverted
"""What `evolve` applies: an inbound event, or an internal fact addressed to a referrer by their friend's purchase
(a credit) or full refund within the hold (a reversal: engine/loyalty/revocation.py)."""

MAX_CATCH_UP_STEPS = 1000


def evolve(
    state: CustomerState | None,
    event: Applied,
    policy: Policy,
    ledger: BudgetLedger | None = None,
) -> Outcome:
    """The next state after `event`, with the transitions, perks and referral credits it causes.

    A repeated event id changes nothing. Time-driven changes due before the event are caught up first,
    each at its own day boundary, so the result does not depend on how often sweeps ran. `ledger`: where grants
    are counted against the perk rules' budgets (needed only by a policy with budgets: engine/loyalty/budgets.py).
    """
    return evolve_in_place(None if state is None else state.copy(), event, policy, ledger)


def evolve_in_place(
    state: CustomerState | None,
    event: Applied,
    policy: Policy,
    ledger: BudgetLedger | None = None,
) -> Outcome:
    """`evolve` for the owner of the state (the replay, a worker): `state` itself becomes the next state (and
    `ledger`, when given, counts the grants it decides)."""
    if isinstance(event, ErasureRequested):
        # The whole state goes: nothing about the customer is kept; consumers are told to forget them too.
        return Outcome(None, (erasure_notice(event),))
    if state is not None and (event.event_id in state.seen_ids or already_applied(state, event)):  # type: ignore[arg-type]
        return Outcome(state, duplicate=True)
    out = Recorder(ledger=ledger)
    if state is None:
        state = CustomerState(customer_id=event.customer_id, clock=event.occurred_at)
    else:
        _catch_up(state, event.occurred_at, policy, out)
        if event.occurred_at < state.clock:
            # Late: the customer's state is already past it (a later event, or a midnight). It is applied all the
            # same (a purchase uploaded days late by an offline till still counts) and what it decides says so.
            out.late = event.occurred_at
    holds = policy.perks.holds
    undoable = holds and isinstance(event, PurchaseRefunded) and may_undo(state, event)
    pending = holds and isinstance(event, ReferralCredited) and waits(policy)  # (counted once the hold passed)
    credit = None if pending else apply(state, event, policy)
    if credit is not None:
        out.referrals.append(credit)
    if event.occurred_at > state.clock:
        state.clock = event.occurred_at
    seen = state.seen_ids
    seen.append(event.event_id)
    if len(seen) > policy.dedup_memory:
        del seen[: -policy.dedup_memory]
    if holds:  # (what a refund may undo: engine/loyalty/revocation.py)
        if isinstance(event, PurchaseCompleted):
            hold_purchase(state, event, credit, policy)
        elif undoable:
            reverted = undo_purchase(state, event, policy, out)  # type: ignore[arg-type]
            if reverted is not None:
                out.reversals.append(reverted)
        elif isinstance(event, ReferralCredited):
            hold_credit(state, event, pending)
        elif isinstance(event, ReferralReverted):
            undo_referral(state, event, policy, out)
        if state.held:
            prune(state, policy)
    evaluate(state, state.clock, event.event_id, policy, out)
    if isinstance(event, ReferralCredited) and not pending:
        grant_referral_reward(state, state.clock, event.event_id, policy, out)
    state.due = next_due(state, policy)
    return out.outcome(state)


def sweep(
    state: CustomerState,
    now: datetime,
    policy: Policy,
    population: Population | None = None,
    ledger: BudgetLedger | None = None,
) -> Outcome:
    """What the passage of time up to `now` causes; with a population, volume is classified too (`ledger`: as for
    `evolve`)."""
    return sweep_in_place(state.copy(), now, policy, population, ledger=ledger)


def sweep_in_place(
    state: CustomerState,
    now: datetime,
    policy: Policy,
    population: Population | None = None,
    spend: Decimal | None = None,
    ledger: BudgetLedger | None = None,
) -> Outcome:
    """`sweep` for the owner of the state: `state` itself becomes the next state (`spend`: the customer's window
    spend at `now`, when the caller knows it; `ledger`: as for `evolve`)."""
    out = Recorder(ledger=ledger)
    _catch_up(state, now, policy, out)
    if population is not None:
        evaluate_volume(state, population, now, f"sweep:{now.date().isoformat()}", policy, out, spend)
    return out.outcome(state)


def next_due(state: CustomerState, policy: Policy) -> datetime | None:
    """The next day boundary at which the passage of time could change something (volume aside)."""
    # A moment m is evaluated at boundary_after(m); that boundary is still ahead of the clock iff m is
    # later than the last midnight at or before the clock.
    floor = day_start(state.clock)
    spans = policy.spans
    window = spans.window
    start = floor - window  # a moment's window ends ahead of the floor iff the moment is later than this
    earliest: datetime | None = None  # the earliest moment ahead of the floor
    for _, bought, amount, refunded in state.purchases:  # in time order: the first one ahead is enough
        if bought > start and refunded < amount:
            earliest = bought + window
            break
    for moment, positive, negative, exceeded, top_nps, public_positive in state.feedback:
        if moment > start and (positive or negative or exceeded or top_nps or public_positive):
            if earliest is None or moment + window < earliest:
                earliest = moment + window
            break
    interest = state.last_interest_at
    if interest is not None and interest > start and (earliest is None or interest + window < earliest):
        earliest = interest + window
    candidates: list[datetime] = []
    last = state.last_purchase_at
    if last is not None:
        candidates.append(last + spans.inactive)
        gap = state.median_gap_days  # kept by the last evaluation, which ran at `clock`
        if gap is not None and state.step in _HABITUAL:
            candidates.append(last + timedelta(days=math.floor(gap * policy.overdue_factor) + 1))
    if state.demotion_pending_since is not None:
        candidates.append(state.demotion_pending_since + spans.grace)
    if state.strong_since is not None and not state.permanent:
        candidates.append(state.strong_since + spans.permanent)
    if state.held:  # a referral credit waiting for its hold (already over: at the next boundary)
        soonest = floor + _INSTANT
        for _, credited, _, _, pending, _ in state.held:
            if pending:
                candidates.append(max(credited + spans.referral_hold, soonest))
    for moment in candidates:
        if moment > floor and (earliest is None or moment < earliest):
            earliest = moment
    return None if earliest is None else boundary_after(earliest)


_HABITUAL = frozenset({"habitual", "exclusive"})
_INSTANT = timedelta(microseconds=1)
_MIDNIGHT = time(tzinfo=UTC)


def day_start(moment: datetime) -> datetime:
    """Midnight UTC at or before `moment`."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return _midnight(moment.toordinal())


def boundary_after(moment: datetime) -> datetime:
    """The first UTC midnight at or after `moment`."""
    midnight = day_start(moment)
    return midnight if midnight == moment else _midnight(midnight.toordinal() + 1)


def _midnight(day: int) -> datetime:
    """The UTC midnight that begins the proleptic Gregorian ordinal `day`: one object a day, kept (the replay and
    the workers take a few midnights per event, and file customers under them: its hash is computed once)."""
    midnight = _MIDNIGHTS.get(day)
    if midnight is None:
        if len(_MIDNIGHTS) >= _MAX_MIDNIGHTS:
            _MIDNIGHTS.clear()
        midnight = _MIDNIGHTS[day] = datetime.combine(date.fromordinal(day), _MIDNIGHT)
    return midnight


_MIDNIGHTS: dict[int, datetime] = {}
_MAX_MIDNIGHTS = 100_000  # (about 270 years of days)


def _catch_up(state: CustomerState, until: datetime, policy: Policy, out: Recorder) -> None:
    """Evaluate every day boundary up to `until` at which something was due, in order."""
    due = state.due
    if due is None or due > until:
        return  # (most events: nothing due before them)
    for _ in range(MAX_CATCH_UP_STEPS):
        due = state.due  # kept up to date after every change of the state
        if due is None or due > until:
            return
        state.clock = due
        evaluate(state, due, f"sweep:{due.date().isoformat()}", policy, out)
        if state.held:
            release_credits(state, policy, out)
            prune(state, policy)
        state.due = next_due(state, policy)
