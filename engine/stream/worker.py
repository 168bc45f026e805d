"""The worker's wiring: the Faust app with Escalera's agent, its timers, the reader of population figures and the
web pages, around one `Processor`."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust
import orjson
from prometheus_client import CollectorRegistry, ProcessCollector

from engine.broker.connection import aiokafka_options
from engine.loyalty import Policy
from engine.settings import Settings
from engine.stream.app import Topology, create_app
from engine.stream.faust_fixes.delivery import deliver_before_commit
from engine.stream.metrics import ConsumerLagCollector, CustomersCollector, RestoreCollector, WorkerMetrics
from engine.stream.population import PartitionSummary, PopulationBoard
from engine.stream.processor import BATCH, BATCH_WAIT, ERASURE_PURGE, TICK, Engine
from engine.stream.web import serve_operations

log = logging.getLogger("escalera.worker")


def build_worker(
    settings: Settings, policy: Policy, tick_seconds: float = 1.0, registry: CollectorRegistry | None = None
) -> tuple[faust.App, Engine]:
    """The Faust app with Escalera's agent, its ticks, the reader of population figures and its web pages."""
    topology = create_app(settings)
    app = topology.app
    registry = CollectorRegistry() if registry is None else registry
    engine = Engine(settings, policy, topology, WorkerMetrics(registry, settings.inbound_topics))
    registry.register(CustomersCollector(lambda: engine.partitions.values(), policy.operations))
    registry.register(ConsumerLagCollector(engine.lag))
    registry.register(RestoreCollector(lambda: app.tables.recovery))  # type: ignore[attr-defined]
    ProcessCollector(registry=registry)  # CPU, memory, open files of the worker process
    serve_operations(app, engine, registry)
    deliver_before_commit(app)
    channel = app.topic(
        *settings.inbound_topics, topology.internal.get_topic_name(),
        key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
    )  # fmt: skip

    # concurrency=1: the agent writes a table (faust-streaming #606 loses messages with more)
    @app.agent(channel, concurrency=1, name="escalera.loyalty")
    async def loyalty(stream: Any) -> None:
        async for events in stream.noack_take(BATCH, within=BATCH_WAIT):
            await engine.handle(stream, list(events))

    @app.timer(interval=tick_seconds)  # type: ignore[untyped-decorator]
    async def tick() -> None:
        for partition in engine.owned_partitions():
            await topology.internal.send(value=TICK, partition=partition)

    @app.timer(interval=30.0)  # type: ignore[untyped-decorator]
    async def report() -> None:
        waiting = {"waiting": engine.merge.pending(), "held_by": engine.merge.holding_back(engine._drained)}
        log.info("so far: %s", orjson.dumps({**vars(engine.tally), **waiting}).decode())

    @app.timer(interval=ERASURE_PURGE)  # type: ignore[untyped-decorator]
    async def purge_erased() -> None:
        await engine.purge.purge()

    @app.task  # type: ignore[untyped-decorator]
    async def read_population() -> None:
        await _read_partition_stats(settings, topology, engine.board)

    return app, engine


async def _read_partition_stats(settings: Settings, topology: Topology, board: PopulationBoard) -> None:
    """Follow every partition's summary, whichever worker posts it (a plain consumer of the compacted topic:
    Faust's GlobalTable misses updates with several workers, robinhood/faust #716 and #541)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    name = topology.partition_stats.get_topic_name()
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **aiokafka_options(settings))
    await consumer.start()
    try:
        while not (partitions := consumer.partitions_for_topic(name)):
            await asyncio.sleep(0.5)
            await consumer._client.force_metadata_update()  # the topic is created by the app at start-up
        consumer.assign([TopicPartition(name, p) for p in partitions])
        await consumer.seek_to_beginning()
        while True:
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for record in records:
                    if record.key is not None and record.value is not None:
                        board.post(int(record.key), PartitionSummary.from_bytes(record.value))
    finally:
        await consumer.stop()
