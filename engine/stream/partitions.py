"""What a worker keeps for each partition it owns: who is due when, and the counts its population figures and
gauges are made of."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

from sortedcontainers import SortedList  # type: ignore[import-untyped]

from engine.loyalty import CustomerState, Population
from engine.loyalty.due import DueCalendar


@dataclass
class OwnedPartition:
    """What this worker keeps for a partition it owns."""

    calendar: DueCalendar = field(default_factory=DueCalendar)
    touched: set[str] = field(default_factory=set)  # changed since their volume was last classified
    spends: dict[str, Decimal] = field(default_factory=dict)  # window spend as of each customer's clock
    by_spend: SortedList = field(default_factory=SortedList)  # (spend, customer_id) of every member
    placed: dict[str, tuple[str, str, str, int]] = field(default_factory=dict)  # see `place`
    steps: Counter[str] = field(default_factory=Counter)  # members per ladder step
    relationships: Counter[str] = field(default_factory=Counter)  # members per relationship quadrant
    satisfaction: Counter[str] = field(default_factory=Counter)  # members per satisfaction class
    formal_complaints: int = 0  # over the members
    changed: bool = True  # since its summary was last posted
    refreshed: float = 0.0  # monotonic time its population figures were last posted and applied
    population: Population | None = None  # the population its volume classes were last set against

    def set_spend(self, customer_id: str, spend: Decimal | None) -> None:
        """A member's window spend (None: no longer a member)."""
        before = self.spends.get(customer_id)
        if before == spend:
            return
        if before is not None:
            self.by_spend.remove((before, customer_id))
            del self.spends[customer_id]
        if spend is not None:
            self.spends[customer_id] = spend
            self.by_spend.add((spend, customer_id))
        self.changed = True

    @property
    def members(self) -> set[str]:
        """The partition's customers (those placed)."""
        return set(self.placed)

    def restore(self, state: CustomerState) -> None:
        """A customer received with the partition (restored from the table): counted, filed under their due day,
        their spend computed at the partition's next population pass."""
        self.touched.add(state.customer_id)
        self.place(state, state.customer_id)
        if state.due is not None:
            self.calendar.add(state.due, state.customer_id)

    def place(self, state: CustomerState | None, customer_id: str) -> None:
        """Count a member where its state puts it: step, relationship, satisfaction, formal complaints (None: no
        longer a member)."""
        before = self.placed.pop(customer_id, None)
        if before is not None:
            self._count(before, -1)
        if state is not None:
            where = (state.step or "none", state.relationship, state.satisfaction, state.formal_complaints)
            self._count(where, 1)
            self.placed[customer_id] = where

    def _count(self, where: tuple[str, str, str, int], sign: int) -> None:
        step, relationship, satisfaction, formal = where
        self.steps[step] += sign
        self.relationships[relationship] += sign
        self.satisfaction[satisfaction] += sign
        self.formal_complaints += sign * formal

    def movable(self, new: Population) -> set[str]:
        """The members whose volume class may differ between the last population and `new`: the untouched
        keep their spend, so only those between the old and the new mean or threshold can move."""
        old = self.population
        if old is None or not old.customers or not new.customers:
            return self.members
        moved: set[str] = set()
        for a, b in ((old.high_volume_threshold, new.high_volume_threshold), (old.mean_spend, new.mean_spend)):
            if a != b:
                span = self.by_spend.irange((min(a, b), ""), (max(a, b), ""), inclusive=(True, False))
                moved.update(customer_id for _, customer_id in span)
        return moved
