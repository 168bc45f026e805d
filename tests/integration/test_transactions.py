"""Shops that publish through transactions (outbox and change-data-capture tools), to a worker on its default
settings: it reads committed records only. Aborted records never reach the loyalty core, the transaction markers
that end every partition hold nothing back, and neither does a transaction left open
(engine/stream/faust_fixes/isolation.py)."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families

from engine.broker.connection import kafka_python_options
from engine.broker.partitioner import partition_of
from engine.broker.publish import route
from engine.broker.topics import ensure_topics
from engine.offline.simulation import SimulationSpec, simulate
from engine.settings import Settings
from tests.integration.engine_harness import (
    WorkerProcess,
    assert_published_as_replayed,
    engine_env,
    read_all,
    replay_as_of,
    running_workers,
    settings_of,
    start_worker,
    table_states,
    wait_for_states,
    wait_until,
)

ABORTED = "aborted-"  # the ids of what only aborted transactions hold
Transaction = tuple[bool, list[bytes]]  # (committed, lines)


def marked(line: bytes, *fields: str) -> bytes:
    """The same event with `ABORTED` before the given fields (present ones only)."""
    event = orjson.loads(line)
    return orjson.dumps({**event, **{name: ABORTED + event[name] for name in fields if name in event}})


def transactions(
    history: list[bytes], strangers: Iterator[bytes], rng: random.Random, settings: Settings
) -> list[Transaction]:
    """The history in committed transactions of a few to a few dozen events, with aborted ones between them: events
    of customers found nowhere else, and second copies (new event and order ids) of purchases just committed — which
    would count twice if applied. An aborted transaction is kept only where committed ones follow it on every
    partition it writes to, so each partition ends with a commit."""
    plan: list[Transaction] = []
    index = 0
    while index < len(history):
        size = rng.randint(5, 60)
        chunk = history[index : index + size]
        index += size
        plan.append((True, chunk))
        if rng.random() < 0.4:
            copies = [marked(line, "event_id", "order_id") for line in chunk if b'"purchase.completed"' in line]
            others = [marked(next(strangers), "event_id", "customer_id", "order_id", "referred_by") for _ in range(6)]
            plan.append((False, copies[:3] + others))
    kept: list[Transaction] = []
    written_later: set[tuple[str, int]] = set()  # partitions a later committed transaction writes to
    for committed, lines in reversed(plan):
        partitions = {partition(line, settings) for line in lines}
        if committed:
            written_later |= partitions
        if committed or partitions <= written_later:
            kept.append((committed, lines))
    return kept[::-1]


def partition(line: bytes, settings: Settings) -> tuple[str, int]:
    where = route(line, settings)
    assert where.key is not None
    return where.topic, partition_of(where.key, settings.topic_partitions)


def producer(settings: Settings, name: str) -> KafkaProducer:
    made = KafkaProducer(transactional_id=f"{settings.app_id}-{name}", acks="all", linger_ms=5,
                         **kafka_python_options(settings))  # fmt: skip
    made.init_transactions()
    return made


def send(made: KafkaProducer, settings: Settings, lines: list[bytes]) -> None:
    for line in lines:
        where = route(line, settings)
        made.send(where.topic, key=where.key, value=line)
    made.flush()  # in the log before the transaction ends, aborted ones too


def publish_in_transactions(settings: Settings, plan: list[Transaction], pause: float) -> None:
    shop = producer(settings, "shop")
    for committed, lines in plan:
        shop.begin_transaction()
        send(shop, settings, lines)
        if committed:
            shop.commit_transaction()
        else:
            shop.abort_transaction()
        time.sleep(pause)
    shop.close()


def committed_in_one_transaction(settings: Settings, lines: list[bytes]) -> None:
    publish_in_transactions(settings, [(True, lines)], 0.0)


def inbound_partitions(settings: Settings) -> list[TopicPartition]:
    return [TopicPartition(t, p) for t in settings.inbound_topics for p in range(settings.topic_partitions)]


Offsets = dict[TopicPartition, int]


def last_records(settings: Settings, isolation: str) -> tuple[Offsets, list[bytes], Offsets]:
    """What a reader with this isolation level finds in the inbound topics: the offset of the last record of each
    partition, every value, and each partition's end offset."""
    reader = KafkaConsumer(isolation_level=isolation, enable_auto_commit=False, **kafka_python_options(settings))
    partitions = inbound_partitions(settings)
    reader.assign(partitions)
    reader.seek_to_beginning()
    ends = reader.end_offsets(partitions)  # under read_committed, the last stable offsets
    last: dict[TopicPartition, int] = {}
    values: list[bytes] = []
    deadline = time.monotonic() + 30
    while any(reader.position(tp) < ends[tp] for tp in partitions) and time.monotonic() < deadline:
        for tp, records in reader.poll(timeout_ms=500).items():
            for record in records:
                last[tp] = record.offset
                values.append(record.value)
    reader.close()
    return last, values, ends


def committed(settings: Settings) -> dict[tuple[str, int], int]:
    """The worker group's committed offsets on the inbound topics."""
    admin = KafkaAdminClient(**kafka_python_options(settings))
    try:
        offsets = admin.list_group_offsets({settings.app_id: None}).get(settings.app_id, {})
    finally:
        admin.close()
    inbound = set(settings.inbound_topics)
    return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items() if tp.topic in inbound}


def lag(worker: WorkerProcess) -> dict[tuple[str, str], float]:
    """The consumer lag the worker reports on /metrics, per inbound topic partition."""
    status, body = worker.get("/metrics")
    assert status == 200
    return {
        (sample.labels["topic"], sample.labels["partition"]): sample.value
        for family in text_string_to_metric_families(body.decode())
        if family.name == "escalera_consumer_lag_records"
        for sample in family.samples
    }


def ready(worker: WorkerProcess) -> bool:
    try:
        return worker.get("/ready")[0] == 200
    except OSError:  # not listening yet
        return False


def event(type_: str, event_id: str, customer: str, moment: datetime, **fields: str) -> bytes:
    at = moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")
    base = {"type": type_, "event_id": event_id, "customer_id": customer, "occurred_at": at, "schema_version": 1}
    return orjson.dumps({**base, **fields})


def purchase(event_id: str, customer: str, moment: datetime) -> bytes:
    return event("purchase.completed", event_id, customer, moment, order_id=f"o-{event_id}", amount="30.00",
                 currency="EUR")  # fmt: skip


def test_aborted_transactions_never_reach_the_worker_and_transaction_markers_hold_nothing_back(
    bootstrap: str, tmp_path: Path
) -> None:
    env = engine_env(bootstrap)
    del env["ESCALERA_WALL_CLOCK_WHEN_IDLE"]  # default settings: the wall clock on, an arrival grace of 1 s
    settings = settings_of(env)
    ended = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    history = list(simulate(SimulationSpec(customers=60, days=365, seed=31, end=ended)))
    strangers = iter(simulate(SimulationSpec(customers=40, days=365, seed=32, end=ended)))
    plan = transactions(history, strangers, random.Random(31), settings)
    aborted = [line for committed, lines in plan if not committed for line in lines]
    ensure_topics(settings)
    with running_workers(env, tmp_path) as workers:
        wait_until(lambda: ready(workers[0]), 60, "the worker is ready")
        began = time.monotonic()
        publish_in_transactions(settings, plan, pause=0.05)

        # what the shop left in Kafka: aborted records in the log, and a commit marker at the end of each partition
        last, committed_values, ends = last_records(settings, "read_committed")
        assert sorted(committed_values) == sorted(history)
        endings = {(tp.topic, tp.partition): (last.get(tp), ends[tp]) for tp in inbound_partitions(settings)}
        assert all(end == record + 2 for record, end in endings.values() if record is not None), [
            (tp, found) for tp, found in endings.items() if found[0] is None or found[1] != found[0] + 2
        ]
        _, every_value, _ = last_records(settings, "read_uncommitted")
        assert sorted(every_value) == sorted(history + aborted)

        expected = replay_as_of(history, datetime.now(UTC))
        wait_for_states(bootstrap, env, expected.states, timeout=300)
        caught_up = time.monotonic() - began
        found = table_states(bootstrap, env)
        assert not [customer for customer in found if customer.startswith(ABORTED)]
        assert not read_all(bootstrap, settings.topic_dlq)  # aborted records are not even read
        assert_published_as_replayed(bootstrap, settings, expected)
        wait_until(lambda: set(lag(workers[0]).values()) == {0.0}, 30, "no lag reported past the last markers")
        after_last_records = {(tp.topic, tp.partition): last[tp] + 1 for tp in inbound_partitions(settings)}
        wait_until(lambda: committed(settings) == after_last_records, 30, "commits past every aborted transaction")

        # a transaction left open on the customers topic holds nothing back: the records after it are not readable
        # yet, but the end of its partition is the open transaction's first offset
        now = datetime.now(UTC)
        pending = producer(settings, "open")
        pending.begin_transaction()
        opened = [event("customer.registered", "e-open-1", "open-1", now - timedelta(seconds=20), kind="final")]
        send(pending, settings, opened)
        later = [purchase("e-later-1", "later-1", now - timedelta(seconds=10))]  # another topic, committed
        committed_in_one_transaction(settings, later)
        wait_until(lambda: "later-1" in table_states(bootstrap, env), 60, "a purchase past an open transaction")
        assert "open-1" not in table_states(bootstrap, env)
        pending.commit_transaction()
        pending.close()
        wait_until(lambda: "open-1" in table_states(bootstrap, env), 60, "the registration once committed")

        # after a restart, reading resumes before the commit markers that end the partitions: still nothing held back
        assert workers[0].stop() == 0
        workers[0] = start_worker(env, tmp_path)
        wait_until(lambda: ready(workers[0]), 60, "the worker is ready again")
        again = [purchase("e-again-1", "again-1", datetime.now(UTC) - timedelta(seconds=5))]
        committed_in_one_transaction(settings, again)
        wait_until(lambda: "again-1" in table_states(bootstrap, env), 60, "a purchase after the restart")

        everything = history + opened + later + again
        expected = replay_as_of(everything, datetime.now(UTC))
        wait_for_states(bootstrap, env, expected.states, timeout=60)
        assert_published_as_replayed(bootstrap, settings, expected)
        wait_until(lambda: set(lag(workers[0]).values()) == {0.0}, 30, "no lag reported after the restart")
    print(f"history of {len(history)} events in {len(plan)} transactions caught up in {caught_up:.0f} s")
