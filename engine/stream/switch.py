"""Rolling a new policy out to live workers (issue 20, item 2): each partition's customers re-evaluated at the switch.

Workers restarted with another policy (its version differs from the one a partition's customers were last evaluated
under) re-evaluate every customer of the partition as soon as they receive it, before applying any new event
(engine/loyalty/switch.py: each at their own clock, caused by `policy:<version>`), instead of lazily at each
customer's next event, which spreads a change over months. `escalera whatif` predicts those decisions
(`switch.jsonl`).

- **Where the version is kept**: in the customer table, under the partition's own key (`policy_key`), written once
  the partition's switch is done, in the batch after its last re-evaluated states (so the changelog never says a
  partition was switched before its states are there; a worker dying half-way switches again, which decides nothing
  new for the customers already re-evaluated, and the same ids for the others). A partition with no version kept
  (new, or written before this existed) is taken as evaluated under the policy the worker starts with.
- **The rate limit**: `ESCALERA_SWITCH_PERKS_PER_SECOND` (default 100; 0: none) paces the perks the switch itself
  grants, so marketing systems are not handed a campaign's worth at once: the customers are re-evaluated in id
  order until the perks granted reach the rate times the seconds since the switch began (plus one second's worth),
  then the rest waits for the next tick. A customer's perks are never split. Meanwhile the worker applies no new
  event and passes no midnight (they wait in the merge, read and uncommitted, as behind the arrival grace): each
  customer is re-evaluated as the history left them, whatever the pace, and the decisions equal the prediction.
- At most `CHUNK` customers a batch, the rest in the next one (a tick sent at once), so memory stays bounded; only
  customers the switch changed are written.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from engine.broker.table_keys import policy_key
from engine.loyalty import Policy

log = logging.getLogger("escalera.worker")

CHUNK = 5000  # customers re-evaluated per batch at most


@dataclass
class _Pending:
    """A partition being switched: its customers left (sorted, the next one last) and what was found."""

    left: list[str]
    customers: int
    switched: int = 0  # customers the switch changed
    granted: int = 0  # perks it granted


@dataclass
class PolicySwitch:
    """Which owned partitions' customers are to be re-evaluated under the policy, and the pace."""

    policy: Policy
    perks_per_second: float
    checked: set[int] = field(default_factory=set)  # partitions whose kept version was read
    pending: dict[int, _Pending] = field(default_factory=dict)
    finished: set[int] = field(default_factory=set)  # switched in this batch: their version written in the next
    to_write: set[int] = field(default_factory=set)  # their version to write with this batch
    began: float | None = None  # (monotonic) when the switch under way began
    granted: int = 0  # perks the switch under way granted

    @property
    def version(self) -> bytes:
        return self.policy.version.encode()

    @property
    def under_way(self) -> bool:
        return bool(self.pending)

    def follow(
        self,
        owned: set[int],
        stored: Callable[[int, bytes], bytes | None],
        customers_of: Callable[[int], Iterable[str]],
    ) -> None:
        """Forget partitions given away; for each one received, read the version its customers were evaluated under
        (`stored`: the table's value of a partition's key) and plan their switch if it is not this policy's."""
        for partition in self.checked - owned:
            self.checked.discard(partition)
            self.pending.pop(partition, None)
            self.finished.discard(partition)
            self.to_write.discard(partition)
        for partition in sorted(owned - self.checked):
            self.checked.add(partition)
            kept = stored(partition, policy_key(partition))
            if kept == self.version:
                continue
            customers = sorted(customers_of(partition), reverse=True)
            if kept is None or not customers:
                self.to_write.add(partition)  # nobody to re-evaluate, or nothing known of an earlier policy
                continue
            self.pending[partition] = _Pending(customers, len(customers))
            if self.began is None:
                self.began, self.granted = time.monotonic(), 0
            was = kept.decode(errors="replace")
            log.info("policy switch: partition %d's %d customers were evaluated under policy %s; re-evaluating them "
                     "under %s", partition, len(customers), was, self.policy.version)  # fmt: skip

    def allowed(self) -> float:
        """How many more perks the switch may grant now."""
        if self.perks_per_second <= 0 or self.began is None:
            return float("inf")
        return self.perks_per_second * (time.monotonic() - self.began + 1.0) - self.granted

    def done(self, partition: int) -> None:
        """A partition's customers are all re-evaluated (its version is written after their states)."""
        pending = self.pending.pop(partition)
        self.finished.add(partition)
        seconds = 0.0 if self.began is None else time.monotonic() - self.began
        log.info("policy switch of partition %d done: %d of %d customers changed, %d perks granted (%.1f s since "
                 "the switch began)", partition, pending.switched, pending.customers, pending.granted,
                 seconds)  # fmt: skip
        if not self.pending:
            self.began = None

    def versions_to_write(self) -> list[tuple[int, bytes, bytes]]:
        """(partition, key, version) of the partitions whose version goes with this batch: those switched in an
        earlier batch (their states are in the changelog) and those with nobody to re-evaluate."""
        return [(p, policy_key(p), self.version) for p in sorted(self.to_write)]

    def written(self, partitions: Iterable[int]) -> None:
        """The batch was written: those versions are kept; the partitions switched in it go with the next batch."""
        self.to_write.difference_update(partitions)
        self.to_write |= self.finished
        self.finished.clear()
