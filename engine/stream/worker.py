"""The worker's wiring: the Faust app with Escalera's agent, its timers, the reader of population figures and the
web pages, around one `Processor`."""

from __future__ import annotations

import asyncio
import logging
import logging.config
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import faust
import orjson
from prometheus_client import CollectorRegistry, ProcessCollector

from engine.broker.connection import aiokafka_options
from engine.loyalty import Policy
from engine.settings import Settings
from engine.stream.app import Topology, create_app, use_event_loop
from engine.stream.faust_fixes.delivery import deliver_before_commit
from engine.stream.faust_fixes.local_tables import MARKER, mark_clean_stop, open_local_state
from engine.stream.local_state import check_local_tables
from engine.stream.logs import logging_config
from engine.stream.membership import record_member, remove_crashed_member
from engine.stream.metrics import ConsumerLagCollector, CustomersCollector, RestoreCollector, WorkerMetrics
from engine.stream.population import PopulationBoard
from engine.stream.processor import BATCH, BATCH_WAIT, Processor
from engine.stream.records import Tick, encode
from engine.stream.web import serve_pages

log = logging.getLogger("escalera.worker")

ERASURE_PURGE = 10.0  # seconds between compactions of the local table files where customers were erased
STATS_RETRY = 2.0  # seconds between two attempts of the population reader to connect


def build_worker(
    settings: Settings, policy: Policy, tick_seconds: float = 1.0, registry: CollectorRegistry | None = None
) -> tuple[faust.App, Processor]:
    """The Faust app with Escalera's agent, its ticks, the reader of population figures and its web pages."""
    topology = create_app(settings)
    app = topology.app
    registry = CollectorRegistry() if registry is None else registry
    processor = Processor(
        settings, policy, topology, app.consumer, app.producer, WorkerMetrics(registry, settings.inbound_topics)
    )
    registry.register(CustomersCollector(lambda: processor.partitions.values(), policy.operations))
    registry.register(ConsumerLagCollector(processor.lag))
    registry.register(RestoreCollector(lambda: app.tables.recovery))  # type: ignore[attr-defined]
    ProcessCollector(registry=registry)  # CPU, memory, open files of the worker process
    serve_pages(app, processor, registry, settings.api_token)
    deliver_before_commit(app)

    # concurrency=1: the agent writes a table (faust-streaming #606 loses messages with more)
    @app.agent(topology.agent_input, concurrency=1, name="escalera.loyalty")
    async def loyalty(stream: Any) -> None:
        async for batch in stream.noack_take(BATCH, within=BATCH_WAIT):
            await processor.handle(stream, list(batch))

    @app.timer(interval=tick_seconds)  # type: ignore[untyped-decorator]
    async def tick() -> None:
        for partition in processor.owned_partitions():
            await topology.internal.send(value=encode(Tick()), partition=partition)

    @app.timer(interval=30.0)  # type: ignore[untyped-decorator]
    async def report() -> None:
        waiting = {"waiting": processor.inputs.merge.pending(), "held_by": processor.inputs.holding_back()}
        log.info("so far: %s", orjson.dumps(waiting).decode())

    @app.timer(interval=ERASURE_PURGE)  # type: ignore[untyped-decorator]
    async def purge_erased() -> None:
        await processor.purge.purge()

    async def wake() -> None:
        """A midnight's population is complete: the processor, waiting for it, goes on at its next batch."""
        waiting, owned = processor.waiting, processor.owned_partitions()
        if waiting is not None and owned and processor.board.population_at(waiting) is not None:
            await topology.internal.send(value=encode(Tick()), partition=owned[0])

    @app.task  # type: ignore[untyped-decorator]
    async def read_population() -> None:
        await _read_partition_stats(settings, topology, processor.board, wake)

    recorded: list[str] = []  # the member id last written: a rebalance that keeps it writes nothing

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def remember_member(sender: Any, *_: Any, **__: Any) -> None:
        """The member id this worker joined with, for its restart after a crash (`engine.stream.membership`): read
        where Faust reads the generation (faust/transport/drivers/aiokafka.py `on_partitions_assigned`)."""
        consumer: Any = app.consumer
        member = getattr(consumer._thread._ensure_consumer()._coordinator, "member_id", None)
        if isinstance(member, str) and member and recorded[-1:] != [member]:
            record_member(settings.data_dir, settings.app_id, member)
            recorded[:] = [member]

    return app, processor


async def _read_partition_stats(
    settings: Settings, topology: Topology, board: PopulationBoard, read: Callable[[], Awaitable[None]]
) -> None:
    """Follow every partition's summaries and the populations, whichever worker posts them (a plain consumer of the
    compacted topic: Faust's GlobalTable misses updates with several workers, robinhood/faust #716 and #541);
    `read` is awaited after each batch of them."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.errors import KafkaConnectionError

    name = topology.partition_stats.get_topic_name()
    while True:
        consumer = AIOKafkaConsumer(enable_auto_commit=False, **aiokafka_options(settings))
        try:
            await consumer.start()
            break
        except KafkaConnectionError as failure:
            # Not a crash of the worker: at a million customers the event loop is busy for tens of seconds after a
            # restart (learning the owned customers, then the first midnight), long enough for the connection this
            # reader opened at start-up to time out (bench/restore.py, issue 18: the app crashed on it).
            await consumer.stop()
            log.info("the reader of population figures could not connect (%s): trying again in %.0f s", failure,
                     STATS_RETRY)  # fmt: skip
            await asyncio.sleep(STATS_RETRY)
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
                        board.read(record.key, record.value)
            if batches:
                await read()
    finally:
        await consumer.stop()


def run_worker(settings: Settings, policy: Policy, tick_seconds: float = 1.0) -> None:
    """Run a worker in the foreground until SIGTERM or Ctrl-C, with Faust's start-up corrected four times: no
    terminal spinner, the member a crashed run left in the group removed (`membership`), local tables kept only
    when they can be trusted (`faust_fixes.local_tables`), and only while the broker still has the changelog they
    were built from (`local_state`, issue 16)."""
    from faust.worker import Worker

    # Faust's worker configures logging only once it runs (mode's `Worker.on_first_start`): configured here first,
    # the lines said before then (about the local tables) come out as every other line, not as plain text on
    # stderr through Python's last-resort handler (issue 16), and INFO lines are not lost.
    logging.config.dictConfig(logging_config(settings))
    use_event_loop(settings)
    app, _ = build_worker(settings, policy, tick_seconds=tick_seconds)
    worker = Worker(app, loglevel=settings.log_level.lower(), quiet=True, logging_config=logging_config(settings))
    # Faust's terminal spinner sets the root logger to DEBUG (faust/worker.py `_setup_spinner_handler`), so every
    # library's debug message is built and then thrown away: a tenth of the worker's time in the stream benchmark.
    worker.spinner = None
    tables = Path(app.conf.tabledir)
    remove_crashed_member(settings, tables, clean_stop=(settings.data_dir / MARKER).exists())
    open_local_state(tables, settings.data_dir)
    changelogs = {table.changelog_topic.get_topic_name(): table.name for table in app.tables.values()}
    check_local_tables(settings, tables, changelogs)
    try:
        worker.execute_from_commandline()
    except SystemExit as stop:
        if not stop.code:
            mark_clean_stop(settings.data_dir)
        raise
    mark_clean_stop(settings.data_dir)
