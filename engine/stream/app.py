"""The Faust app, built by one factory from the settings: broker, credentials, store, topics and tables."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faust

from engine.broker.connection import faust_credentials
from engine.broker.topics import changelog_config
from engine.settings import Settings
from engine.stream.faust_fixes.isolation import read_committed


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
