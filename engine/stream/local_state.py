"""Local tables are kept only while the broker still has the changelog they were built from (issue 16).

A worker's RocksDB tables (ESCALERA_DATA_DIR) are a copy of the table's changelog, read up to some offset. When the
broker behind them is another one — `escalera kafka` restarted without `--data`, a cluster rebuilt, the changelog
topic deleted and created again — that copy belongs to no changelog the worker can reach, and Faust either
- refuses it: its recovery raises `ConsistencyError` ("persisted offset ... higher than the last offset in that
  topic (highwater)", faust/tables/recovery.py `_restart_recovery`) and the worker dies with a traceback; or,
- when the new changelog happens to be long enough (its check is skipped for a highwater of 0, and cannot see a
  changelog that was replaced), reads the new changelog on top of the old table from the old offset: two brokers'
  customers in one table, silently.

So before Faust opens the tables, the worker asks the broker for its cluster id, each changelog topic's id
(KIP-516) and end offsets, and compares them with what it recorded at its last start (`ORIGIN`, in the data
directory) and with how far each local partition has applied its changelog. On any mismatch every local table is
discarded, with one log line saying why, and Faust rebuilds them from this broker's changelog as on a first start.
The level is WARNING: the customer states the worker held are replaced by the broker's, which an operator should
confirm was meant (the wrong ESCALERA_BOOTSTRAP_SERVERS, or a broker that lost its data, look just the same).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from engine.broker.connection import kafka_python_options
from engine.settings import ENV_PREFIX, Settings
from engine.stream.faust_fixes.local_tables import discard_tables, persisted_offsets

log = logging.getLogger("escalera.worker")

ORIGIN = "kafka-origin.json"  # in the data directory: the cluster and changelog topics the local tables come from
REBUILD = "discarding them, the worker rebuilds them from this cluster's changelog"
LOST = "customer states the broker no longer has are lost with them"
_NO_TOPIC_ID = "00000000-0000-0000-0000-000000000000"  # a broker without topic ids answers this one


@dataclass(frozen=True)
class Origin:
    """Where local tables were built: the Kafka cluster, and the id of each changelog topic that existed then."""

    cluster_id: str
    topic_ids: Mapping[str, str]  # changelog topic name -> topic id


@dataclass(frozen=True)
class Changelog:
    """What the broker holds of one changelog topic now."""

    topic_id: str | None  # None: no id known (an old broker)
    end_offsets: Mapping[int, int]  # partition -> the offset the next record will get


def stale_reason(
    recorded: Origin | None,
    cluster_id: str,
    changelogs: Mapping[str, Changelog | None],
    applied: Mapping[str, Mapping[int, int]],
) -> str | None:
    """Why local tables cannot be kept, as the rest of a sentence starting "the local tables in DIR"; None if they
    can.

    `recorded` is where they were built (None: not recorded, a data directory older than the record); `cluster_id`
    and `changelogs` (changelog topic -> what the broker holds, None when the topic does not exist) describe the
    broker now; `applied` gives, for each changelog topic, the offset of the last record each local partition
    applied. A partition can be kept only if the record it applied last is still in the changelog: its offset is
    below the partition's end offset (Faust itself refuses only an offset above the last one, and not when the
    last one is 0, faust/tables/recovery.py).
    """
    if not any(applied.values()):
        return None  # no local table has applied anything: nothing to discard
    if recorded is not None and recorded.cluster_id != cluster_id:
        return (
            f"were built from another Kafka cluster (id {recorded.cluster_id}; this one is {cluster_id}): {REBUILD} "
            f"(if this is not the cluster meant, check {ENV_PREFIX}BOOTSTRAP_SERVERS)"
        )
    for topic, offsets in sorted(applied.items()):
        if not offsets:
            continue
        now = changelogs.get(topic)
        if now is None:
            return f"were built from changelog topic {topic}, which this cluster does not have: {REBUILD}"
        before = recorded.topic_ids.get(topic) if recorded is not None else None
        if before is not None and now.topic_id is not None and before != now.topic_id:
            return (
                f"were built from changelog topic {topic} with id {before}, which was deleted since (the topic of "
                f"that name now has id {now.topic_id}): {REBUILD}; {LOST}"
            )
        behind = [(p, offset) for p, offset in sorted(offsets.items()) if offset >= now.end_offsets.get(p, 0)]
        if behind:
            partition, offset = behind[0]
            others = len(behind) - 1
            more = f" (and {others} more partition{'s' if others > 1 else ''})" if others else ""
            end = (
                f"ends at offset {now.end_offsets[partition]}"
                if partition in now.end_offsets
                else "does not exist on this cluster"
            )
            return (
                f"have applied changelog {topic} partition {partition} up to offset {offset}, but that partition "
                f"{end}{more}: {REBUILD}; {LOST}"
            )
    return None


def check_local_tables(settings: Settings, tables: Path, changelogs: Mapping[str, str]) -> bool:
    """Before Faust opens them: discard the local tables in `tables` if the broker no longer has the changelog they
    were built from (`stale_reason`), then record this broker as their origin. `changelogs` maps each table's
    changelog topic to the table's name. Returns whether the tables were discarded.

    Nothing to do for the memory store. If the broker cannot be asked, the tables are kept unchecked (and the
    origin left as it was): the worker's own connection then fails or succeeds as before.
    """
    if settings.table_store != "rocksdb":
        return False
    from kafka.errors import KafkaError

    applied = {topic: persisted_offsets(tables, table) for topic, table in changelogs.items()}
    try:
        cluster_id, found = broker_changelogs(settings, changelogs)
    except (KafkaError, OSError) as error:
        if any(applied.values()):
            log.warning(
                "could not ask the broker whether the local tables in %s match its changelog (%r): keeping them "
                "unchecked",
                tables,
                error,
            )
        return False
    reason = stale_reason(read_origin(settings.data_dir), cluster_id, found, applied)
    if reason is not None:
        log.warning("the local tables in %s %s", tables, reason)
        discard_tables(tables)
    topic_ids = {topic: now.topic_id for topic, now in found.items() if now is not None and now.topic_id}
    write_origin(settings.data_dir, Origin(cluster_id, topic_ids))
    return reason is not None


def broker_changelogs(settings: Settings, topics: Iterable[str]) -> tuple[str, dict[str, Changelog | None]]:
    """The broker's cluster id, and each topic's id and end offsets (None for a topic it does not have)."""
    from kafka import TopicPartition
    from kafka.admin import KafkaAdminClient, OffsetSpec
    from kafka.errors import UnknownTopicOrPartitionError, for_code

    names = list(topics)
    with _quiet("kafka"):  # kafka-python says a dozen INFO lines per connection: not the worker's news
        admin = KafkaAdminClient(client_id=f"{settings.app_id}-local-state", **kafka_python_options(settings))
        try:
            cluster_id = str(admin.describe_cluster()["cluster_id"])
            described: dict[str, dict[str, Any]] = {}
            for topic in admin.describe_topics(names):
                error = for_code(topic["error_code"])
                if error is UnknownTopicOrPartitionError:
                    continue
                if topic["error_code"]:
                    raise error(f"describing {topic['name']}")
                described[topic["name"]] = topic
            wanted = {
                TopicPartition(name, partition["partition_index"]): OffsetSpec.LATEST
                for name, topic in described.items()
                for partition in topic["partitions"]
            }
            ends = admin.list_partition_offsets(wanted) if wanted else {}
        finally:
            admin.close()
    changelogs: dict[str, Changelog | None] = dict.fromkeys(names)
    for name, topic in described.items():
        topic_id = None if topic["topic_id"] in (None, _NO_TOPIC_ID) else str(topic["topic_id"])
        offsets = {tp.partition: found.offset for tp, found in ends.items() if tp.topic == name}
        changelogs[name] = Changelog(topic_id, offsets)
    return cluster_id, changelogs


def read_origin(data_dir: Path) -> Origin | None:
    """The origin recorded in the data directory; None if there is none (or it cannot be read)."""
    try:
        found = orjson.loads((data_dir / ORIGIN).read_bytes())
        return Origin(str(found["cluster_id"]), {str(k): str(v) for k, v in found["topic_ids"].items()})
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def write_origin(data_dir: Path, origin: Origin) -> None:
    """Record where the local tables come from (replacing the file at once: a crash leaves the old or the new)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    temporary = data_dir / f"{ORIGIN}.tmp"
    temporary.write_bytes(orjson.dumps({"cluster_id": origin.cluster_id, "topic_ids": dict(origin.topic_ids)}))
    os.replace(temporary, data_dir / ORIGIN)


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """The logger `name` says warnings and errors only, for the duration of the block."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(max(logging.WARNING, logger.getEffectiveLevel()))
    try:
        yield
    finally:
        logger.setLevel(level)
