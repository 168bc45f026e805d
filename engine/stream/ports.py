"""What the stream processor needs of Faust and Kafka, as small protocols: the real objects are Faust's, the unit
tests' are fakes (tests/unit/test_processor.py), as cosmicpython drives its handlers with a fake unit of work."""

from __future__ import annotations

from typing import Any, Protocol

from faust.types import TP


class Topic(Protocol):
    """A topic the processor sends to (Faust's `Topic`)."""

    def send_soon(self, *, key: bytes | None = None, value: bytes | None = None, partition: int | None = None) -> Any:
        """Queue a record in the producer's buffer."""

    def get_topic_name(self) -> str:
        """The topic's name."""


class Table(Protocol):
    """The customer table (Faust's `Table`): customer id → stored state (`CustomerState.encode`), read and written
    under the current event."""

    @property
    def name(self) -> str:
        """The table's name."""

    def get(self, key: bytes) -> bytes | None:
        """A value, or None."""

    def __setitem__(self, key: bytes, value: bytes) -> None: ...

    def __delitem__(self, key: bytes) -> None: ...

    def __contains__(self, key: object) -> bool: ...

    def items(self) -> Any:
        """Every (key, value) held on this worker, standby partitions included."""


class Channels(Protocol):
    """Where the processor's records go, and its table (the app's `Topology`)."""

    @property
    def perks(self) -> Topic: ...

    @property
    def transitions(self) -> Topic: ...

    @property
    def dead_letters(self) -> Topic: ...

    @property
    def internal(self) -> Topic: ...

    @property
    def partition_stats(self) -> Topic: ...

    @property
    def customers(self) -> Table: ...


class Consumer(Protocol):
    """Faust's consumer, as far as the processor uses it (the corrections of `faust_fixes.continuity` also replace
    its `_add_gap`, and `ownership` reads its `_committed_offset`: private parts, read where present)."""

    def assignment(self) -> set[TP]:
        """The topic partitions assigned to this worker."""

    def highwater(self, tp: TP) -> int | None:
        """The offset after the last record of `tp` (None: not known yet)."""

    async def seek_wait(self, partitions: dict[TP, int]) -> None:
        """Read the partitions again from these offsets (in the consumer's own thread)."""


class Producer(Protocol):
    """Faust's producer."""

    async def flush(self) -> None:
        """Wait until every queued record is delivered."""


class RecordStream(Protocol):
    """The agent's stream: its current event (which table accesses follow) and acknowledgements."""

    current_event: Any

    def _set_current_event(self, event: Any = None) -> None:
        """Make `event` the current event (table reads and writes go to its partition)."""

    async def ack(self, event: Any) -> bool:
        """Acknowledge a record: its offset may be committed."""
