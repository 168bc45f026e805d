"""What a worker keeps for each partition it owns: who is due when, and the counts its population figures and
gauges are made of."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from engine.loyalty import CustomerState
from engine.loyalty.due import DueCalendar
from engine.loyalty.state import StateSummary
from engine.loyalty.volume import SpendBook

# Every place a member can be counted at, once: a million customers share a few hundred, where each would otherwise
# hold a tuple and three strings of its own, as decoded (about 240 bytes a customer: the peak of a worker owning
# 1,000,000 customers went from 1,342 MB to 1,080 MB, bench/restore.py, issue 18).
_PLACES: dict[tuple[str, str, str, int], tuple[str, str, str, int]] = {}


@dataclass
class OwnedPartition(SpendBook):
    """What this worker keeps for a partition it owns: its customers' spends as of the last midnight passed (the
    `SpendBook`), who is due when, and the counts its gauges are made of."""

    calendar: DueCalendar = field(default_factory=DueCalendar)
    placed: dict[str, tuple[str, str, str, int]] = field(default_factory=dict)  # see `place`
    steps: Counter[str] = field(default_factory=Counter)  # members per ladder step
    relationships: Counter[str] = field(default_factory=Counter)  # members per relationship quadrant
    satisfaction: Counter[str] = field(default_factory=Counter)  # members per satisfaction class
    formal_complaints: int = 0  # over the members
    fresh: bool = True  # nobody was restored with it: it held no one before this worker applied its events
    empty_before: datetime | None = None  # a fresh partition's first midnight passed (see `PartitionSummary`)

    @property
    def members(self) -> set[str]:
        """The partition's customers (those placed)."""
        return set(self.placed)

    def restore(self, state: StateSummary) -> None:
        """A customer received with the partition (restored from the table): counted, filed under their due day,
        their spend settled at the next midnight the worker passes."""
        self.fresh = False
        self.touched.add(state.customer_id)
        self.place(state, state.customer_id)
        if state.due is not None:
            self.calendar.add(state.due, state.customer_id)

    def place(self, state: CustomerState | StateSummary | None, customer_id: str) -> None:
        """Count a member where its state puts it: step, relationship, satisfaction, formal complaints (None: no
        longer a member)."""
        before = self.placed.pop(customer_id, None)
        if before is not None:
            self._count(before, -1)
        if state is not None:
            where = (state.step or "none", state.relationship, state.satisfaction, state.formal_complaints)
            where = _PLACES.setdefault(where, where)
            self._count(where, 1)
            self.placed[customer_id] = where

    def _count(self, where: tuple[str, str, str, int], sign: int) -> None:
        step, relationship, satisfaction, formal = where
        self.steps[step] += sign
        self.relationships[relationship] += sign
        self.satisfaction[satisfaction] += sign
        self.formal_complaints += sign * formal
