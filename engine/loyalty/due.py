"""Which customers are due for a sweep at which day boundary, taken in (day, customer) order."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from datetime import datetime


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

    def entries(self) -> list[tuple[datetime, str]]:
        """Every entry, in the order `take` would give them."""
        return sorted((day, customer_id) for day, customers in self._customers.items() for customer_id in customers)

    def __len__(self) -> int:
        return sum(len(customers) for customers in self._customers.values())
