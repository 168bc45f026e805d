"""Read back what workers left in Kafka: the customer table from its changelog, the group's committed progress."""

from __future__ import annotations

from engine.broker.connection import kafka_python_options
from engine.broker.table_keys import is_ledger_key, is_partition_key
from engine.loyalty import CustomerState
from engine.settings import Settings


def table_states(settings: Settings, quiet_seconds: float = 2.0) -> dict[str, CustomerState]:
    """The customer table as its changelog holds it: the last value per customer, erased customers gone (the
    partitions' own keys, their budget ledgers and policy versions, left out)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        settings.changelog_topic, auto_offset_reset="earliest", enable_auto_commit=False,
        consumer_timeout_ms=int(quiet_seconds * 1000), **kafka_python_options(settings),
    )  # fmt: skip
    states: dict[str, CustomerState] = {}
    for record in consumer:
        if is_partition_key(record.key):
            continue
        key = record.key.decode()
        if record.value is None:
            states.pop(key, None)
        else:
            states[key] = CustomerState.decode(record.value)
    consumer.close()
    return states


def budget_ledgers(settings: Settings, quiet_seconds: float = 2.0) -> dict[int, bytes]:
    """The perk budget ledgers the changelog holds, by the partition they count for: the last saved of each
    (`PartitionLedger.to_json`; engine/broker/table_keys.py)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        settings.changelog_topic, auto_offset_reset="earliest", enable_auto_commit=False,
        consumer_timeout_ms=int(quiet_seconds * 1000), **kafka_python_options(settings),
    )  # fmt: skip
    ledgers = {record.partition: record.value for record in consumer if is_ledger_key(record.key)}
    consumer.close()
    return {partition: raw for partition, raw in ledgers.items() if raw is not None}


def committed_records(settings: Settings) -> int:
    """Inbound records the worker group has committed (0 while its coordinator is not there yet)."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    admin = KafkaAdminClient(**kafka_python_options(settings))
    try:
        offsets = admin.list_group_offsets({settings.app_id: None}).get(settings.app_id, {})
    except KafkaError:
        return 0
    finally:
        admin.close()
    inbound = set(settings.inbound_topics)
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic in inbound and meta.offset > 0)
