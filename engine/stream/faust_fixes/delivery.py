"""Every record a worker queued is handed to the Kafka client before Faust commits the offsets it came from.

Faust flushes its producer before committing (faust-streaming PR #273), but its buffer's flush gives up after
0.1 s without a message sent (`ProducerBuffer.flush_atmost`) and the commit goes on: a worker killed then has
committed records whose table writes, perks and dead letters were still in the buffer, lost for good (measured by
tests/reliability/test_crash.py). Here the buffer counts the records put in and handed over, and a flush waits
until every record queued before it began has been handed over; the Kafka client's own flush, which Faust calls
next, then waits for their delivery. Records queued after the flush began are not waited for, so a steady flow
of new ones cannot hold a commit back.
"""

from __future__ import annotations

import asyncio
import types
from typing import Any

import faust

PATIENCE = 1.0  # seconds between looks at a buffer that hands nothing over (a busy or unreachable broker)


class CountedEvent(asyncio.Event):
    """The buffer's "a message was sent" signal, counting how often it was given (once per record sent)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def set(self) -> None:
        self.count += 1
        super().set()


class DeliveryCount:
    """Counts of the records put into a Faust producer buffer and handed over to the Kafka client."""

    def __init__(self, buffer: Any) -> None:
        self.buffer, self.queued, self.sent = buffer, 0, CountedEvent()
        put = buffer.put

        def counted_put(future: Any) -> None:
            self.queued += 1
            put(future)

        buffer.put = counted_put
        buffer.message_sent = self.sent  # the buffer's sending loop sets it after each record

    async def flush(self) -> None:
        """Wait until every record queued so far has been handed over."""
        target = self.queued
        while self.sent.count < target:
            if self.buffer.state != "running":
                raise RuntimeError("cannot flush: the producer buffer is not running")
            self.sent.clear()
            if self.sent.count >= target:
                break
            try:
                await asyncio.wait_for(self.sent.wait(), timeout=PATIENCE)
            except TimeoutError:
                continue


def deliver_before_commit(app: faust.App) -> DeliveryCount:
    """Make the app's producer buffer flush everything queued before a commit (call before the app starts)."""
    buffer = app.producer.buffer
    count = DeliveryCount(buffer)

    async def flush(self: Any) -> None:
        await count.flush()

    buffer.flush = types.MethodType(flush, buffer)  # type: ignore[method-assign]
    return count
