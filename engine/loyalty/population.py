"""Figures across all customers that the volume classification compares one customer against."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import ClassVar


@dataclass(frozen=True, slots=True)
class Population:
    """The spend threshold of the top spenders, the mean spend, and how many customers were compared."""

    high_volume_threshold: Decimal
    mean_spend: Decimal
    customers: int

    EMPTY: ClassVar[Population]

    @classmethod
    def compute(cls, spends: Iterable[Decimal], high_volume_share: Decimal) -> Population:
        """From every customer's window spend (customers who spent nothing are left out).

        High volume: the fewest top spenders who together make `high_volume_share` of the total; the
        threshold is the smallest spend among them.
        """
        ordered = sorted((s for s in spends if s > 0), reverse=True)
        if not ordered:
            return cls.EMPTY
        total = sum(ordered, Decimal(0))
        target = total * high_volume_share
        running = Decimal(0)
        threshold = ordered[0]
        for spend in ordered:
            running += spend
            threshold = spend
            if running >= target:
                break
        return cls(threshold, (total / len(ordered)).quantize(Decimal("0.01")), len(ordered))


Population.EMPTY = Population(Decimal(0), Decimal(0), 0)
