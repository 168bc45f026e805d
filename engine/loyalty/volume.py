"""Volume on event time: the population-relative class is decided at each UTC midnight the stream passes, against
every customer's window spend as of that midnight — in the offline replay and in every worker alike.

Issue 15: decided on a five-second wall-clock schedule, the demo's customers differed from the replay's on volume
for 306-317 of 550, and the transitions changed from run to run of the same demo. A day's pass depends only on
the events before that midnight, so it is the same whatever the machine's speed and however the customers are
spread over workers (tests/unit/test_volume.py, tests/integration/test_real_arrival.py).

Only customers whose class may change are touched at a pass: those whose state changed since the last one, and
those whose spend lies between the previous and the new population's mean or threshold (`SpendBook.movable`).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import accumulate, islice
from operator import itemgetter

from sortedcontainers import SortedList  # type: ignore[import-untyped]

from engine.loyalty.budgets import BudgetLedger
from engine.loyalty.classifications import volume_of
from engine.loyalty.evolve import sweep_in_place
from engine.loyalty.figures import window_spend
from engine.loyalty.outcome import Outcome
from engine.loyalty.policy import Policy
from engine.loyalty.population import Population
from engine.loyalty.state import CustomerState

_ZERO = Decimal(0)
_CHUNK = 256


@dataclass
class SpendBook:
    """The window spends of a set of customers as of the last midnight settled, kept sorted, and who changed since
    their volume was last classified."""

    spends: dict[str, Decimal] = field(default_factory=dict)
    by_spend: SortedList = field(default_factory=SortedList)  # (spend, customer_id) of every customer
    touched: set[str] = field(default_factory=set)  # changed since their volume was last classified
    population: Population | None = None  # the population their volume was last classified against
    changed: bool = True  # spends changed since `positive_spends` was last taken
    total: Decimal = Decimal(0)  # of the positive spends
    positive: int = 0  # customers with a positive spend
    # The window spend a customer's last evaluation found, and when (`Outcome.evaluated_spend`): noted by an owner of
    # the states that has it, taken by `settle` instead of summing the window again when it still holds.
    evaluated: dict[str, tuple[datetime, Decimal]] = field(default_factory=dict)

    def set_spend(self, customer_id: str, spend: Decimal | None) -> None:
        """A customer's window spend (None: no longer kept)."""
        before = self.spends.get(customer_id)
        if before == spend:
            return
        if before is not None:
            self.by_spend.remove((before, customer_id))
            del self.spends[customer_id]
            if before > 0:
                self.total -= before
                self.positive -= 1
        if spend is not None:
            self.spends[customer_id] = spend
            self.by_spend.add((spend, customer_id))
            if spend > 0:
                self.total += spend
                self.positive += 1
        self.changed = True

    def settle(self, day: datetime, peek: Callable[[str], CustomerState | None], policy: Policy) -> int:
        """Bring the spends of the customers touched since the last midnight up to `day`; return how many."""
        evaluated, window = self.evaluated, policy.spans.window
        for customer_id in self.touched:
            state = peek(customer_id)
            seen = evaluated.pop(customer_id, None)
            if state is None:
                self.set_spend(customer_id, None)
            elif seen is not None and _holds(state, seen[0], day, window):
                self.set_spend(customer_id, seen[1])
            else:
                self.set_spend(customer_id, window_spend(state, day, policy))
        return len(self.touched)

    def positive_spends(self) -> tuple[Decimal, ...]:
        """The spends a population is computed from (customers who spent nothing are left out)."""
        self.changed = False
        # the positive ones are the last `positive` entries of the sorted index: taken without a comparison each
        return tuple(map(itemgetter(0), self.by_spend.islice(len(self.by_spend) - self.positive)))

    def population_of_all(self, high_volume_share: Decimal) -> Population:
        """The population of the book's customers: what `Population.compute` gives of their spends, from the sorted
        index and the running total (no sort, no copy: the replay computes one at every midnight)."""
        if not self.positive:
            return Population.EMPTY
        target = self.total * high_volume_share
        running = Decimal(0)
        threshold = Decimal(0)
        spends = map(itemgetter(0), reversed(self.by_spend))  # from the top spender down
        while chunk := list(islice(spends, _CHUNK)):  # summed a chunk at a time (the adds in C, in the same order)
            after = sum(chunk, running)
            if after >= target:  # the running total reaches the target within this chunk: at which spend
                threshold = chunk[bisect_left(list(accumulate(chunk, initial=running)), target, 1) - 1]
                break
            running, threshold = after, chunk[-1]
        return Population(threshold, (self.total / self.positive).quantize(Decimal("0.01")), self.positive)

    def movable(self, new: Population) -> set[str]:
        """The customers whose volume class may differ between the last population and `new`: the untouched keep
        their spend, so only those between the old and the new mean or threshold can move."""
        old = self.population
        if old is None or not old.customers or not new.customers:
            return set(self.spends)
        moved: set[str] = set()
        for a, b in ((old.high_volume_threshold, new.high_volume_threshold), (old.mean_spend, new.mean_spend)):
            if a != b:
                span = self.by_spend.irange((min(a, b), ""), (max(a, b), ""), inclusive=(True, False))
                moved.update(customer_id for _, customer_id in span)
        return moved


def _holds(state: CustomerState, at: datetime, day: datetime, window: timedelta) -> bool:
    """Whether the window spend at `day` is the one an evaluation found at `at`: the state has not changed since (its
    clock is still `at`, no later than `day`) and no purchase counted at `at` has left the window by `day` (the same
    purchases, summed in the same order, give the same decimal)."""
    if at != state.clock or at > day:
        return False
    counted_after, gone_by = at - window, day - window
    for _, bought, amount, refunded in state.purchases:  # in time order
        if bought > gone_by:
            return True
        if bought > counted_after and refunded < amount:
            return False
    return True


def classify_day(
    book: SpendBook,
    day: datetime,
    population: Population,
    peek: Callable[[str], CustomerState | None],
    policy: Policy,
    ledger: BudgetLedger | None = None,
) -> Iterator[tuple[str, Outcome, datetime | None]]:
    """Classify at `day` (a midnight the book was settled at) the volume of every customer it may change:
    `(customer_id, outcome, due_before)` for each whose state changed. **The states `peek` returns are changed in
    place.** A customer whose clock is already past `day` (events applied by another owner, or rerouted ahead) is
    left touched for a later day; one whose class was changed at `day` or later is left alone (a worker that
    restarts resumes from the midnight after its least advanced partition's time, and may pass a midnight again:
    the decision is not made twice). Lazy: the caller records each outcome before the next is taken. `ledger` counts
    the grants of volume's perk rules against their budgets (engine/loyalty/budgets.py)."""
    candidates = book.touched | book.movable(population) if population != book.population else set(book.touched)
    later: set[str] = set()
    spends = book.spends
    for customer_id in sorted(candidates):
        state = peek(customer_id)
        if state is None:
            continue
        if state.clock > day:
            later.add(customer_id)
            continue
        if state.volume_since is not None and state.volume_since >= day:
            continue  # this midnight (or a later one) was passed for them already: a worker restarted behind it
        clock, due = state.clock, state.due
        spend = spends.get(customer_id, _ZERO)
        if (due is None or due > day) and volume_of(spend, population) == state.volume:
            continue  # nothing due and the class holds: the sweep would change nothing
        outcome = sweep_in_place(state, day, policy, population, spend, ledger)
        if outcome.emitted or state.clock != clock or state.due != due:
            yield customer_id, outcome, due
    book.population = population
    book.touched = later  # the others were just classified: recording them touched them again, needlessly
