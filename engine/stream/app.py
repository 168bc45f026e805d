"""The Faust app, built by one factory from the settings: broker, credentials, store, topics and tables."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import faust

from engine.broker.connection import faust_credentials
from engine.broker.topics import changelog_config
from engine.errors import SettingsError
from engine.settings import Settings
from engine.stream.faust_fixes.handover import handover_directly
from engine.stream.faust_fixes.isolation import read_committed
from engine.stream.faust_fixes.recovery_pace import pace_recovery


@dataclass(frozen=True)
class Topology:
    """The app and the channels its agents use."""

    app: faust.App
    perks: Any
    transitions: Any
    dead_letters: Any
    internal: Any  # referral credits and rerouted events keyed by customer, ticks by partition
    partition_stats: Any  # compacted: each partition's population summary, keyed by partition number
    customers: Any  # faust.Table: customer_id (bytes) -> serialized CustomerState
    agent_input: Any  # what the agent reads: the three inbound topics and the internal topic


# RocksDB's memory per partition of the table, sized on purpose (issue 18): Faust's defaults (faust/stores/rocksdb.py,
# `RocksDBOptions`) give each partition's database up to 3 write buffers of 64 MB and a 2 GiB block cache of its own,
# so a worker holding 8 partitions could grow to 1.5 GB of write buffers and 16 GiB of cache. States are read mostly
# once per batch and kept in the worker's own cache meanwhile (engine/stream/states.py), and the operating system
# caches the files, so a small block cache and two 16 MB write buffers per partition are enough.
ROCKSDB_OPTIONS = {
    "write_buffer_size": 16 * 1024 * 1024,
    "max_write_buffer_number": 2,
    "block_cache_size": 32 * 1024 * 1024,
}


def use_event_loop(settings: Settings) -> None:
    """Choose the event loop every Faust worker of this process runs on (before Faust makes one).

    uvloop by default: it lowers Faust's own per-record cost, measured by bench/stream.py (issue 18, BENCHMARKS.md);
    mode's `mode.loop.use("uvloop")`, which Faust's `--loop` option calls, does the same."""
    if settings.event_loop != "uvloop":
        return
    try:
        import uvloop
    except ImportError:
        raise SettingsError(
            "ESCALERA_EVENT_LOOP=uvloop but uvloop is not installed here: install it (pip install uvloop), "
            "or set ESCALERA_EVENT_LOOP=asyncio"
        ) from None
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def create_app(settings: Settings) -> Topology:
    """One Faust app for Escalera, configured only from `settings`."""
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{server}" for server in settings.bootstrap_servers],
        broker_credentials=faust_credentials(settings),
        store=settings.table_store_url,
        datadir=str(settings.data_dir),
        web_host=settings.advertised_host,  # Faust's name for the host in this worker's URL (table routing)
        web_port=settings.web_port,
        web_bind=settings.web_host,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        topic_allow_declare=True,
        processing_guarantee="at_least_once",  # exactly_once has open bugs in faust-streaming
        consumer_auto_offset_reset="earliest",
        autodiscover=False,
        key_serializer="raw",
        value_serializer="raw",
        # Faust's default linger of 0 sends a produce request for nearly every record; 5 ms lets a batch's
        # decisions and changelog writes share requests (measured in bench/stream.py).
        # The worker's event-time merge holds records unacknowledged until their turn, and that turn may depend
        # on the rebalance's outcome: waiting for them before a rebalance completes never ends. Faust seeks every
        # partition back to its committed offset after a rebalance, so held records are read again anyway.
        stream_wait_empty=False,
        producer_linger=0.005,
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_seconds / 3),  # a third of it at most
        producer_max_batch_size=262_144,
    )
    read_committed(app)  # committed records only, processing still at-least-once (faust_fixes.isolation)
    pace_recovery(app)  # restore takes queued changelog records without a task each (faust_fixes.recovery_pace)
    handover_directly(app)  # no task per record handed over unless the hand-over blocks (faust_fixes.handover)

    def topic(*names: str, **options: Any) -> Any:
        return app.topic(
            *names, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw", **options
        )

    customers = app.Table(
        "customers",
        partitions=settings.topic_partitions,
        key_type=bytes,
        value_type=bytes,  # the app's default serializers are raw: state is stored as its own JSON bytes
        help="Customer state by customer_id.",
        extra_topic_configs=changelog_config(settings),  # erased customers leave it within a bounded delay
        options=ROCKSDB_OPTIONS if settings.table_store == "rocksdb" else None,
    )
    return Topology(
        app=app,
        perks=topic(settings.topic_perks),
        transitions=topic(settings.topic_transitions),
        dead_letters=topic(settings.topic_dlq),
        internal=topic(settings.internal_topic),
        partition_stats=topic(settings.partition_stats_topic),
        customers=customers,
        agent_input=topic(*settings.inbound_topics, settings.internal_topic),
    )
