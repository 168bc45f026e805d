"""The reader of population figures outlives a connection that failed: it connects again instead of crashing the
worker (issue 18: at a million customers the event loop was busy long enough after a restart for its first
connection to time out, and the whole app stopped)."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest
from aiokafka.errors import KafkaConnectionError

from engine.settings import load_settings
from engine.stream import worker


class FakeConsumer:
    """aiokafka's consumer, as the reader uses it: the first `failures` starts fail to connect."""

    made: ClassVar[list[FakeConsumer]] = []
    failures = 2

    def __init__(self, **_: Any) -> None:
        self.started = self.stopped = False
        FakeConsumer.made.append(self)

    async def start(self) -> None:
        if len(FakeConsumer.made) <= FakeConsumer.failures:
            raise KafkaConnectionError("Unable to bootstrap")
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    def partitions_for_topic(self, _: str) -> set[int]:
        return {0}

    def assign(self, _: Any) -> None: ...

    async def seek_to_beginning(self) -> None: ...

    async def getmany(self, timeout_ms: int) -> dict[Any, list[Any]]:
        if any(c.started for c in FakeConsumer.made) and getattr(self, "served", False):
            raise asyncio.CancelledError  # the worker stops
        self.served = True
        record = type("Record", (), {"key": b"0", "value": b"summary"})()
        return {"tp": [record]}


class Topic:
    def get_topic_name(self) -> str:
        return "escalera-partition-stats"


def test_the_population_reader_connects_again_after_a_failed_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("aiokafka.AIOKafkaConsumer", FakeConsumer)
    monkeypatch.setattr(worker, "STATS_RETRY", 0.0)
    FakeConsumer.made = []
    read: list[tuple[bytes, bytes]] = []
    board = type("Board", (), {"read": lambda self, key, value: read.append((key, value))})()
    topology = type("Topology", (), {"partition_stats": Topic()})()
    woken: list[int] = []

    async def wake() -> None:
        woken.append(1)

    settings = load_settings({"ESCALERA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(worker._read_partition_stats(settings, topology, board, wake))  # type: ignore[arg-type]
    assert len(FakeConsumer.made) == 3  # two failed starts, each consumer stopped, then one that connected
    assert [c.stopped for c in FakeConsumer.made] == [True, True, True]
    assert read == [(b"0", b"summary")] and woken == [1]
