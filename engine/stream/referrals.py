"""The referral frontier: a referral credit reaches its referrer before the referrer's later events, as in the replay.

A referred customer's first purchase credits the referrer, whose partition another worker may own. Each worker
tells the owners of the other partitions its frontier — the earliest event time at which it may still emit a
credit — in a `Watermark` on the internal topic, after the credits it sent (records are ordered per partition, so
a watermark vouches for the credits sent on the partition it was read from). An owner lets its events go only up
to the lowest frontier it has heard (its barrier).

Under a policy with holds (issue 19) a refund may undo a conversion, and the referrer is then sent a
`ReferralReverted`, applied in the replay before anything later: a refund that may do so holds the frontier as a
possible first purchase does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from engine.loyalty import CustomerState, ReferralCredited, ReferralReverted
from engine.stream.records import Watermark
from schemas.events import InboundEvent

EARLIEST = datetime.min.replace(tzinfo=UTC)


class ReferralFrontier:
    """Who may still convert a referral here, what the other workers have said of theirs, and what was last said."""

    def __init__(self, partitions: int, holds: bool = False) -> None:
        self.partitions = partitions
        self.holds = holds  # the policy's refund or referral hold: a refund may undo a conversion
        self.referred: set[str] = set()  # customers registered with a referrer: their first purchase converts
        # partition read on -> other workers' partitions -> their frontier
        self.heard_on: dict[int, dict[int, datetime | None]] = {}
        self.said: tuple[datetime | None, tuple[int, ...]] | None = None

    def registered(self, event: InboundEvent) -> None:
        """An event was read: a registration with a referrer makes its customer's first purchase a conversion."""
        if event.type == "customer.registered" and event.referred_by is not None:
            self.referred.add(event.customer_id)

    def erased(self, customer_id: str) -> None:
        """An erased customer is forgotten here too."""
        self.referred.discard(customer_id)

    def may_convert(
        self, event: InboundEvent | ReferralCredited | ReferralReverted, state: CustomerState | None
    ) -> bool:
        """A purchase that may be a referred customer's first, and so may convert a referral, or a refund that may undo
        one (`state`: the customer's state as far as it is known now; a conversion queued before the refund holds the
        frontier earlier until applied, and is held in the state after: `engine.loyalty.revocation`)."""
        if event.type == "purchase.refunded":
            if not self.holds:
                return False
            if state is None:
                return event.customer_id in self.referred
            return any(referrer is not None for _, _, _, referrer, _, _ in state.held)
        if event.type != "purchase.completed":
            return False
        if event.referred_by is not None:
            return True
        if state is None:
            return event.customer_id in self.referred
        return not state.has_purchased and (state.referred_by is not None or event.customer_id in self.referred)

    def frontier(
        self,
        queued: Iterable[tuple[datetime, InboundEvent | ReferralCredited | ReferralReverted]],
        reading: Iterable[datetime | None],
        state_of: Callable[[str], CustomerState | None],
    ) -> datetime | None:
        """The earliest event time at which this worker may still emit a credit (None: not before new records
        arrive): its earliest queued possible first purchase, and for every input that still has records to deliver,
        the time of the last one read (`reading`; None: nothing read yet)."""
        times = [at for at, event in queued if self.may_convert(event, state_of(event.customer_id))]
        times.extend(EARLIEST if at is None else at for at in reading)
        return min(times) if times else None

    def heard(self, read_on: int, mark: Watermark) -> None:
        """Another worker's frontier, read on partition `read_on` of the internal topic."""
        marks = self.heard_on.setdefault(read_on, {})
        for partition in mark.partitions:
            marks[partition] = mark.until

    def barrier(self, owned: Iterable[int]) -> datetime | None:
        """How far this worker may go: the lowest frontier of the partitions it does not own (None: no limit)."""
        mine = list(owned)
        foreign = set(range(self.partitions)) - set(mine)
        if not foreign:
            return None
        marks = [self.heard_on.get(read_on, {}).get(p, EARLIEST) for read_on in mine for p in foreign]
        limits = [mark for mark in marks if mark is not None]
        return min(limits) if limits else None

    def announcement(
        self, owned: Iterable[int], frontier: Callable[[], datetime | None], again: bool = False
    ) -> list[tuple[int, Watermark]]:
        """The watermarks to send (partition, watermark) so the owners of the other partitions learn this worker's
        frontier: none when it was said already, unless `again`."""
        mine = tuple(sorted(owned))
        foreign = sorted(set(range(self.partitions)) - set(mine))
        if not mine or not foreign:
            return []
        until = frontier()
        if (until, mine) == self.said and not again:
            return []
        self.said = (until, mine)
        mark = Watermark(mine, until)
        return [(partition, mark) for partition in foreign]
