"""Every record of a partition reaches the worker: when one arrives further on than the next one due, the
records in between were skipped, and the partition is read again from the first one missing.

Faust skips records after it seeks back to the committed offsets (at every assignment it resumes fetching
before it seeks, faust-streaming #216 is the same race on another path): a record fetched before the seek and
handed over after it moves Faust's read offset past records it then drops as already read, and its gap rule
(`Consumer._add_gap`, meant for compacted topics) counts them as done, so its next commit passes them. Measured
by tests/reliability/test_crash.py: 8 records per partition after a restart, lost after the next kill, or never
read. So Faust's gap rule is switched off, and the worker seeks back itself.

Escalera's input topics are not compacted, and the worker reads committed records only: the offsets its consumer
reads past are transaction markers and aborted records, which `faust_fixes.isolation` reports (`read_past`) and
counts as done, so the record after them is admitted at once. Without that report, a one-offset jump that seeking
back does not fill within `MARKER_PATIENCE` is taken as a marker. A larger jump that seeking back does not fill
within `PATIENCE` (records deleted by retention before they were read) is let through with a warning. Either way
Faust's gap rule then counts the missing offsets as done, so commits go on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from faust.types import TP

log = logging.getLogger("escalera.continuity")

MARKER_PATIENCE = (3, 2.0)  # seeks back, and seconds since the first, before a one-offset jump is a marker
PATIENCE = (20, 30.0)  # the same for a larger jump, before the records are taken as gone
STALL_SECONDS = 10.0  # an input with records left that hands none over for this long is read again


class Continuity:
    """The next offset due per partition read, and the partitions to read again from it."""

    def __init__(self, consumer: Any) -> None:
        self.consumer = consumer
        self.due: dict[TP, int] = {}
        self.missing: dict[TP, int] = {}  # the first offset seen past the one due, in this batch: seek back
        self.tries: dict[tuple[TP, int], tuple[int, float]] = {}  # (partition, offset) -> seeks, first seek
        self.last_record: dict[TP, float] = {}  # monotonic time a record was last handed over, or reading started
        self.stalled: dict[TP, int] = {}  # partitions to read again from this offset: records left, none came
        self._faust_gap = consumer._add_gap
        # offsets the consumer read past without handing a record over: transaction markers and aborted records
        # (`faust_fixes.isolation`, which also counts them as done for Faust's commits)
        self._read_past = getattr(consumer, "read_past", None)

        async def no_gap(tp: TP, offset_from: int, offset_to: int) -> None:
            """Faust's gap rule, off: records it did not hand over are never counted as done."""

        consumer._add_gap = no_gap

    def start(self, tp: TP, committed: int | None) -> None:
        """Reading `tp` starts at its committed offset (None: not known, the first record read sets it)."""
        if committed is not None:
            self.due.setdefault(tp, committed)
        self.last_record[tp] = time.monotonic()

    def forget(self, kept: Iterable[int]) -> None:
        """After a rebalance: partitions given away are read by their new owner."""
        owned = set(kept)
        for tp in [tp for tp in self.due if tp.partition not in owned]:
            del self.due[tp]
            self.missing.pop(tp, None)
        for tp in [tp for tp in self.last_record if tp.partition not in owned]:
            del self.last_record[tp]
            self.stalled.pop(tp, None)

    def admit(self, message: Any) -> bool:
        """Whether to process this record now; False: records before it were skipped, it is read again later."""
        tp, offset = message.tp, message.offset
        self.last_record[tp] = time.monotonic()
        due = self.due.get(tp)
        if due is None or offset <= due:  # in order, or read again
            self.due[tp] = max(offset + 1, due or 0)
            return True
        if self._read_past is not None and self._read_past(tp, due, offset):
            self.due[tp] = offset + 1  # nothing was skipped: the offsets between hold no record to read
            return True
        self.missing[tp] = min(offset, self.missing.get(tp, offset))
        return False

    def waiting(self, tp: TP, next_offset: int) -> None:
        """The worker waits for `tp`, which has records left from `next_offset` on: if none has come for
        `STALL_SECONDS`, read it again from there (Faust also drops records it fetched under an earlier consumer
        generation, mid-rebalance, without handing them over or reading them again)."""
        if time.monotonic() - self.last_record.setdefault(tp, time.monotonic()) > STALL_SECONDS:
            self.stalled[tp] = next_offset

    async def read_again(self) -> None:
        """Seek each partition where records were skipped back to the first one missing."""
        now = time.monotonic()
        for tp, beyond in sorted(self.missing.items()):
            due = self.due[tp]
            count, first = self.tries.get((tp, due), (0, now))
            seeks, seconds = MARKER_PATIENCE if beyond == due + 1 else PATIENCE
            if count >= seeks and now - first >= seconds:
                level = logging.INFO if beyond == due + 1 else logging.WARNING
                log.log(level, "offsets %d to %d of %s/%d never came after %d seeks in %.0f s: taken as a "
                        "transaction marker or as deleted", due, beyond - 1, tp.topic, tp.partition, count,
                        now - first)  # fmt: skip
                await self._faust_gap(tp, due, beyond - 1)  # counted as done, so commits go on past them
                self.due[tp] = beyond
                del self.tries[(tp, due)]
                continue
            self.tries[(tp, due)] = (count + 1, first)
            log.info("records of %s/%d from offset %d were skipped by Faust: reading them again",
                     tp.topic, tp.partition, due)  # fmt: skip
            # seek_wait: in the consumer's own thread, where Faust runs aiokafka (its `seek` is not thread-safe:
            # it crashed the fetcher mid-fetch); it also sets Faust's read offset to `due`
            await self.consumer.seek_wait({tp: due})
        self.missing.clear()
        for tp, offset in sorted(self.stalled.items()):
            # INFO: reading again is the cure, nothing for an operator to do (issue 16: WARNING is for action); a
            # partition that stays stuck shows as lag (escalera_consumer_lag_records, alert EscaleraConsumerLagGrowing).
            log.info("no record of %s/%d came for %.0f s though records are left: reading again from offset %d",
                     tp.topic, tp.partition, STALL_SECONDS, offset)  # fmt: skip
            self.last_record[tp] = now
            await self.consumer.seek_wait({tp: offset})
        self.stalled.clear()
        if len(self.tries) > 10_000:
            self.tries.clear()
