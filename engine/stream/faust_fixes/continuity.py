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
counts as done, so the record after them is admitted at once. With that report, a jump is never guessed to be a
marker: seeking back fills it, however long the records already fetched take to drain (under CPU load they kept
coming for more than `MARKER_PATIENCE`, a skipped record was taken as a marker, applied after later ones when read
again, and the state differed from the replay: tests/reliability/test_crash.py, issue 18). Only a consumer without
it (the unit tier's fakes) takes a one-offset jump that seeking back does not fill within `MARKER_PATIENCE` as a
marker. A jump that seeking back does not fill within `PATIENCE` is checked against the partition's earliest
offset: records deleted by retention before they were read are let through with a warning (Faust's gap rule then
counts them as done, so commits go on); records still there are read again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

from faust.types import TP

log = logging.getLogger("escalera.continuity")

MARKER_PATIENCE = (3, 2.0)  # seeks back, and seconds since the first, before a one-offset jump is a marker
PATIENCE = (20, 30.0)  # the same for a larger jump, before the records are taken as gone
STALL_SECONDS = 10.0  # an input with records left that hands none over for this long is read again
ASK_SECONDS = 10.0  # the longest wait for the broker's committed offset of a partition received


class Continuity:
    """The next offset due per partition read, and the partitions to read again from it."""

    def __init__(self, consumer: Any) -> None:
        self.consumer = consumer
        self.due: dict[TP, int] = {}
        self.missing: dict[TP, int] = {}  # the first offset seen past the one due, in this batch: seek back
        self.tries: dict[tuple[TP, int], tuple[int, float]] = {}  # (partition, offset) -> seeks, first seek
        self.last_record: dict[TP, float] = {}  # monotonic time a record was last handed over, or reading started
        self.stalled: dict[TP, int] = {}  # partitions to read again from this offset: records left, none came
        self.unknown: set[TP] = set()  # partitions with no committed offset: reading starts at the earliest kept
        self._faust_gap = consumer._add_gap
        # offsets the consumer read past without handing a record over: transaction markers and aborted records
        # (`faust_fixes.isolation`, which also counts them as done for Faust's commits)
        self._read_past = getattr(consumer, "read_past", None)

        async def no_gap(tp: TP, offset_from: int, offset_to: int) -> None:
            """Faust's gap rule, off: records it did not hand over are never counted as done."""

        consumer._add_gap = no_gap

    def start(self, tp: TP, committed: int | None = None) -> None:
        """Reading `tp` starts (a partition received): where is asked of the broker before any of its records is
        admitted (`settle_starts`). `committed`, Faust's record of the group's offset, is not trusted for it: the
        first batch after an assignment can run while Faust still seeks to the committed offsets (its recovery
        resumes the flow first), its record not yet updated; read then, it was missing for some partitions, the
        first record read set where reading started, and a record Faust handed over after skipping the ones before
        it was admitted, the skipped ones applied after later ones (tests/reliability/test_crash.py under CPU load,
        3 runs in 4, issue 18)."""
        if tp not in self.due:
            if committed is not None:
                self.due[tp] = committed  # until the broker says (kept when the consumer cannot ask it)
            self.unknown.add(tp)
        self.last_record[tp] = time.monotonic()

    async def settle_starts(self) -> dict[TP, int]:
        """The first offset due on each partition received: the group's committed offset, asked of the broker, or
        the earliest offset kept when the group has none (`consumer_auto_offset_reset` is earliest). Left unknown
        (the first record read sets it) when the consumer cannot say; asked again at the next batch when the broker
        does not answer. Returns where reading resumes on each partition settled."""
        wanted = sorted(self.unknown)
        try:
            found = await self._resume_points(wanted)
        except Exception as failure:  # the broker is unreachable or busy: the next batch asks again
            log.info("where reading resumes on %d partitions could not be read (%s): asking again", len(wanted),
                     failure)  # fmt: skip
            return {}
        if found is None:
            self.unknown.clear()
            return {}
        settled = {}
        for tp in wanted:
            if (offset := found.get(tp)) is not None:
                self.due[tp] = settled[tp] = offset
                self.unknown.discard(tp)
        return settled

    async def _resume_points(self, wanted: list[TP]) -> dict[TP, int] | None:
        """The committed offset of each partition in `wanted`, else its earliest offset kept (None: the consumer can
        tell neither). The committed offsets are asked in the consumer's own thread, where Faust runs aiokafka."""
        found: dict[TP, int] = {}
        thread = getattr(self.consumer, "_thread", None)
        earliest = getattr(self.consumer, "earliest_offsets", None)
        if thread is None and earliest is None:
            return None
        if thread is not None:
            from aiokafka.structs import TopicPartition

            made = thread._ensure_consumer()
            asked = [thread.call_thread(made.committed, TopicPartition(tp.topic, tp.partition)) for tp in wanted]
            answers = await asyncio.wait_for(asyncio.gather(*asked), timeout=ASK_SECONDS)  # at once, not in turn
            found = {tp: committed for tp, committed in zip(wanted, answers, strict=True) if committed is not None}
        rest = [tp for tp in wanted if tp not in found]
        if rest and earliest is not None:
            found.update({tp: offset for tp, offset in (await earliest(*rest)).items() if tp in rest})
        return found

    def forget(self, kept: Iterable[int]) -> None:
        """After a rebalance: partitions given away are read by their new owner."""
        owned = set(kept)
        for tp in [tp for tp in self.due if tp.partition not in owned]:
            del self.due[tp]
            self.missing.pop(tp, None)
        for tp in [tp for tp in self.last_record if tp.partition not in owned]:
            del self.last_record[tp]
            self.stalled.pop(tp, None)
        self.unknown = {tp for tp in self.unknown if tp.partition in owned}

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

    async def _earliest(self, tp: TP) -> int | None:
        """The earliest offset the partition still holds (None: the consumer cannot say)."""
        earliest = getattr(self.consumer, "earliest_offsets", None)
        if earliest is None:
            return None
        found: int | None = (await earliest(tp)).get(tp)
        return found

    async def read_again(self) -> None:
        """Seek each partition where records were skipped back to the first one missing."""
        now = time.monotonic()
        for tp, beyond in sorted(self.missing.items()):
            due = self.due[tp]
            count, first = self.tries.get((tp, due), (0, now))
            guess_marker = beyond == due + 1 and self._read_past is None
            seeks, seconds = MARKER_PATIENCE if guess_marker else PATIENCE
            if count >= seeks and now - first >= seconds:
                del self.tries[(tp, due)]
                kept = None if guess_marker else await self._earliest(tp)
                if kept is not None and kept <= due:  # still there: read again, however long it takes
                    log.info("offsets from %d of %s/%d did not come after %d seeks in %.0f s though the partition "
                             "still holds them: reading them again", due, tp.topic, tp.partition, count,
                             now - first)  # fmt: skip
                    self.tries[(tp, due)] = (1, now)
                    await self.consumer.seek_wait({tp: due})
                    continue
                until = beyond if kept is None else min(beyond, kept)
                level = logging.INFO if guess_marker else logging.WARNING
                log.log(level, "offsets %d to %d of %s/%d never came after %d seeks in %.0f s: taken as a "
                        "transaction marker or as deleted", due, until - 1, tp.topic, tp.partition, count,
                        now - first)  # fmt: skip
                await self._faust_gap(tp, due, until - 1)  # counted as done, so commits go on past them
                self.due[tp] = until
                if until < beyond:  # the records from the earliest kept on are there: read them
                    await self.consumer.seek_wait({tp: until})
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
