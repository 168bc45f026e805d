"""Offline replay: the loyalty core over a JSON-lines event file, in file order, with event time as the clock."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from engine.loyalty import (
    CustomerState,
    Outcome,
    Policy,
    Population,
    Published,
    ReferralCredited,
    ReferralReverted,
    SuppressedPerk,
    day_start,
    evolve_in_place,
)
from engine.loyalty.budgets import Ledgers
from engine.loyalty.due import DueCalendar, sweep_due
from engine.loyalty.volume import SpendBook, classify_day
from engine.settings import Settings
from schemas.decoder import DecodeLimits, Rejection, decode
from schemas.events import EventRejected, InboundEvent, RejectionSource

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
# The inbound topics' partitions by default (ESCALERA_TOPIC_PARTITIONS): perk budgets are shared out among them.
DEFAULT_PARTITIONS: int = Settings.model_fields["topic_partitions"].default


@dataclass
class ReplayCounts:
    """What the replay counted along the way."""

    lines: int = 0
    events: int = 0
    duplicates: int = 0
    late: int = 0  # events older than an event before them in the file (or a midnight passed): applied all the same
    erased: int = 0  # customers erased (held, then erased)
    erasure_notices: int = 0  # customer.erased notices sent: one per erasure request, held customer or not
    rejections: Counter[str] = field(default_factory=Counter)
    perks_granted: Counter[str] = field(default_factory=Counter)
    perks_revoked: Counter[str] = field(default_factory=Counter)  # taken back by a refund within the hold
    perks_suppressed: Counter[str] = field(default_factory=Counter)  # perk:reason (cooldown, cap, window, ...)
    transitions: Counter[str] = field(default_factory=Counter)


class Replay:
    """Feed lines one by one, then `finish(as_of)`; decisions and dead letters go to the callbacks in order.

    `partitions`: how many partitions the inbound topics have (ESCALERA_TOPIC_PARTITIONS): a perk budget is shared
    out among them, each customer's grants counted in their partition's share, as the workers count them
    (engine/loyalty/budgets.py), so that the replay grants what they grant."""

    def __init__(
        self,
        policy: Policy,
        limits: DecodeLimits,
        now: datetime,
        on_decision: Callable[[Published], None],
        on_rejected: Callable[[EventRejected], None],
        partitions: int = DEFAULT_PARTITIONS,
    ) -> None:
        self.policy, self.limits, self.now = policy, limits, now
        self.on_decision, self.on_rejected = on_decision, on_rejected
        self.states: dict[str, CustomerState] = {}
        self.due = DueCalendar()
        self.clock: datetime | None = None
        self.book = SpendBook()  # every customer's window spend as of the last midnight passed
        self._passed: datetime | None = None  # the last midnight passed (volume classified as of it)
        self._next_midnight = EPOCH  # the one after it (set with the clock): an event before it passes no midnight
        self.counts = ReplayCounts()
        self.ledgers = Ledgers(partitions)  # each partition's grants against the perk rules' budgets
        self._ledger = self.ledgers if policy.budgeted else None  # (none asked for: nothing to count)
        self.last_event: InboundEvent | None = None  # the last line's event (None: it was rejected)
        # Called at each midnight classified, with its population (bootstrap seeds the workers with them).
        self.on_midnight: Callable[[datetime, Population], None] | None = None
        # Called with each perk held back, with its reason (counted in `counts` either way).
        self.on_suppressed: Callable[[SuppressedPerk], None] | None = None

    def feed(self, raw: bytes) -> None:
        """Decode one line and apply it; a line that is not a valid event becomes a dead letter."""
        self.counts.lines += 1
        result = decode(raw, now=self.now, limits=self.limits)
        if isinstance(result, Rejection):
            self.last_event = None
            self.counts.rejections[result.reason] += 1
            self.on_rejected(result.to_event(RejectionSource(line=self.counts.lines), self.clock or EPOCH))
            return
        self.counts.events += 1
        self.last_event = result
        moment = result.occurred_at
        if self.clock is None:
            self.clock, self._passed = moment, day_start(moment)
            self._next_midnight = self._passed + DAY
        elif moment > self.clock:
            if moment >= self._next_midnight:
                self._pass_days(day_start(moment))  # time passed day boundaries: sweeps and volume first
            self.clock = moment
        late, duplicates = moment < self.clock, self.counts.duplicates
        self._apply(result)
        if late and self.counts.duplicates == duplicates:  # a repeated event is a duplicate, not a late one
            self.counts.late += 1
            overdue = self.due.next_day()
            if self._passed is not None and overdue is not None and overdue <= self._passed:
                self._sweep_due(self._passed)  # due at a midnight already passed: swept to it now, as the worker does

    def finish(self, as_of: datetime | None = None) -> Population:
        """The final sweep at `as_of` (default: the latest event time): every midnight up to it is passed, with
        volume classified at each (not at `as_of` itself: volume is decided at day boundaries, as the worker
        does). Returns the population as of the last midnight passed."""
        moment = as_of or self.clock or EPOCH
        if self._passed is not None:
            self._pass_days(day_start(moment))
        self._sweep_due(moment)
        return self.book.population or Population.EMPTY

    def _pass_days(self, until: datetime) -> None:
        """Pass every midnight up to `until` (a midnight): sweep who is due, then classify volume against the
        population as of that midnight. A midnight with no change since the last one is skipped: it would change
        nothing (the worker passes it, to the same effect)."""
        assert self._passed is not None
        while True:
            if self.book.touched:
                day = self._passed + DAY
            else:  # nothing changed since the last midnight: the next one that matters is when someone is due
                upcoming = self.due.next_day()
                if upcoming is None:
                    break
                day = max(self._passed + DAY, upcoming)
            if day > until:
                break
            self._sweep_due(day)
            self.book.settle(day, self.states.get, self.policy)
            population = self.book.population
            if self.book.changed or population is None:
                population = self.book.population_of_all(self.policy.classification.high_volume_share)
                self.book.changed = False
            classified = classify_day(self.book, day, population, self.states.get, self.policy, self._ledger)
            for customer_id, outcome, due in classified:
                self._record(customer_id, outcome, due)
            if self.on_midnight is not None:
                self.on_midnight(day, population)
            self._passed = day
        self._passed = max(self._passed, until)
        self._next_midnight = self._passed + DAY

    def _apply(self, event: InboundEvent | ReferralCredited | ReferralReverted) -> None:
        state = self.states.get(event.customer_id)
        due = None if state is None else state.due
        # The replay owns its states: changed in place.
        outcome = evolve_in_place(state, event, self.policy, self._ledger)
        self._record(event.customer_id, outcome, due)
        for credit in outcome.referrals:
            self._apply(credit)  # the referrer's state is right here: credit it directly
        for reverted in outcome.reversals:
            self._apply(reverted)  # (likewise a conversion undone by a refund within the hold)

    def _sweep_due(self, until: datetime) -> None:
        for customer_id, outcome, due_before in sweep_due(self.due, until, self.states.get, self.policy, self._ledger):
            self._record(customer_id, outcome, due_before)

    def _record(self, customer_id: str, outcome: Outcome, due_before: datetime | None) -> None:
        """Count and pass on what an outcome decided; queue the customer again when their due moment moved."""
        if outcome.duplicate:
            self.counts.duplicates += 1
            return
        self.book.touched.add(customer_id)
        if outcome.state is None:
            self.counts.erased += customer_id in self.states
            self.states.pop(customer_id, None)
            self.book.set_spend(customer_id, None)
        else:
            self.states[customer_id] = outcome.state
            if outcome.evaluated_spend is not None:  # the midnight takes it instead of summing the window again
                self.book.evaluated[customer_id] = outcome.evaluated_spend
            due = outcome.state.due
            if due is not None and due != due_before:  # stale entries are checked again when they come up
                self.due.add(due, customer_id)
        for decision in outcome.published():
            if decision.type == "perk.granted":
                self.counts.perks_granted[decision.perk] += 1
            elif decision.type == "perk.revoked":
                self.counts.perks_revoked[decision.perk] += 1
            elif decision.type == "customer.erased":
                self.counts.erasure_notices += 1
            else:
                self.counts.transitions[decision.type] += 1
            self.on_decision(decision)
        for held in outcome.suppressed:
            self.counts.perks_suppressed[f"{held.perk}:{held.reason}"] += 1
            if self.on_suppressed is not None:
                self.on_suppressed(held)
