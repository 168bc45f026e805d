"""Which customers are due for a sweep at which day boundary, taken in (day, customer) order, and the sweep of
those due (one loop for the offline replay and the stream worker)."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime

from engine.loyalty.budgets import BudgetLedger
from engine.loyalty.evolve import sweep_in_place
from engine.loyalty.outcome import Outcome
from engine.loyalty.policy import Policy
from engine.loyalty.state import CustomerState


class DueCalendar:
    """Customers filed under the midnight at which time could change something for them.

    Entries may be stale (the customer's due moment moved since): whoever takes them checks the state.
    Days are few (one per date), so the heap orders dates and each day's customers are a set.
    """

    def __init__(self, entries: Iterable[tuple[datetime, str]] = ()) -> None:
        self._days: list[datetime] = []
        self._customers: dict[datetime, set[str]] = {}
        for day, customer_id in entries:
            self.add(day, customer_id)

    def add(self, day: datetime, customer_id: str) -> None:
        """File `customer_id` under `day`."""
        customers = self._customers.get(day)
        if customers is None:
            customers = self._customers[day] = set()
            heapq.heappush(self._days, day)
        customers.add(customer_id)

    def take(self, until: datetime) -> Iterator[tuple[datetime, str]]:
        """Remove and yield every entry filed at or before `until`, by day then customer id."""
        while self._days and self._days[0] <= until:
            day = heapq.heappop(self._days)
            for customer_id in sorted(self._customers.pop(day)):
                yield day, customer_id

    def next_day(self) -> datetime | None:
        """The earliest day anyone is filed under (the entry may be stale)."""
        return self._days[0] if self._days else None

    def entries(self) -> list[tuple[datetime, str]]:
        """Every entry, in the order `take` would give them."""
        return sorted((day, customer_id) for day, customers in self._customers.items() for customer_id in customers)

    def __len__(self) -> int:
        return sum(len(customers) for customers in self._customers.values())


def sweep_due(
    calendar: DueCalendar,
    until: datetime,
    load: Callable[[str], CustomerState | None],
    policy: Policy,
    ledger: BudgetLedger | None = None,
) -> Iterator[tuple[str, Outcome, datetime]]:
    """Sweep to `until` every customer of `calendar` who is due by then: `(customer_id, outcome, due_before)` each.

    Takes the calendar's entries by day then customer id and loads each state with `load`. A missing customer, or
    one no longer due, is dropped; one whose due moment moved past `until` is filed again under it. The others are
    swept in place: **the states `load` returns are changed**, and each outcome comes with the due moment the state
    had before. Lazy: the caller records each outcome (and may file the customer again) before the next is taken.
    `ledger` counts the grants against the perk rules' budgets (engine/loyalty/budgets.py).
    """
    for _, customer_id in calendar.take(until):
        state = load(customer_id)
        if state is None or state.due is None:
            continue
        due_before = state.due
        if due_before > until:
            calendar.add(due_before, customer_id)
            continue
        yield customer_id, sweep_in_place(state, until, policy, ledger=ledger), due_before
