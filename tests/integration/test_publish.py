"""`escalera publish` puts each event on its type's topic, keyed by customer_id; nothing is dropped."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer
from kafka.admin import KafkaAdminClient, NewTopic

from engine.broker.topics import TopicMismatchError, ensure_topics, loyalty_topics
from engine.settings import Settings, load_settings


def isolated_env(bootstrap: str, partitions: int = 3) -> dict[str, str]:
    """ESCALERA_* variables naming topics of this test's own."""
    tag = uuid.uuid4().hex[:8]
    topics = ("PURCHASES", "FEEDBACK", "CUSTOMERS", "PERKS", "TRANSITIONS", "DLQ")
    return {
        "ESCALERA_BOOTSTRAP_SERVERS": bootstrap,
        "ESCALERA_APP_ID": f"escalera-{tag}",  # the worker's internal topics are named after it
        "ESCALERA_TOPIC_PARTITIONS": str(partitions),
        **{f"ESCALERA_TOPIC_{name}": f"{name.lower()}-{tag}" for name in topics},
    }


def settings_for(bootstrap: str, partitions: int = 3) -> Settings:
    return load_settings(isolated_env(bootstrap, partitions))


def read_topic(bootstrap: str, topic: str, expect: int, timeout: float = 20) -> list:
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=1000)
    records: list = []
    deadline = time.monotonic() + timeout
    while len(records) < expect and time.monotonic() < deadline:
        records.extend(consumer)
    consumer.close()
    return records


def test_topics_are_created_once_with_the_configured_partitions(bootstrap: str) -> None:
    settings = settings_for(bootstrap, partitions=4)
    created = ensure_topics(settings)
    assert sorted(created) == sorted(spec.name for spec in loyalty_topics(settings))
    assert ensure_topics(settings) == []  # idempotent
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    described = admin.describe_topics([settings.topic_purchases, settings.topic_dlq])
    admin.close()
    assert [len(t["partitions"]) for t in described] == [4, 4]


def test_a_topic_with_another_partition_count_is_refused_by_name(bootstrap: str) -> None:
    settings = settings_for(bootstrap, partitions=4)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(settings.topic_feedback, 2, 1)])
    admin.close()
    with pytest.raises(TopicMismatchError, match=f"{settings.topic_feedback}.*2 partitions"):
        ensure_topics(settings)


def test_publish_routes_by_type_keys_by_customer_and_keeps_bad_lines(bootstrap: str, tmp_path: Path) -> None:
    variables = isolated_env(bootstrap)
    settings = load_settings(variables)
    lines = [
        {"type": "purchase.completed", "customer_id": "c-1", "event_id": "e-1"},
        {"type": "purchase.refunded", "customer_id": "c-1", "event_id": "e-2"},
        {"type": "feedback.received", "customer_id": "c-2", "event_id": "e-3"},
        {"type": "customer.registered", "customer_id": "c-3", "event_id": "e-4"},
        {"type": "customer.interest_shown", "customer_id": "c-2", "event_id": "e-5"},
    ]
    raw = [orjson.dumps(line) for line in lines] + [b"{not json", b"[1, 2]", b""]
    source = tmp_path / "events.jsonl"
    source.write_bytes(b"\n".join(raw) + b"\n")

    env = {**os.environ, **variables}
    result = subprocess.run(
        [sys.executable, "-m", "engine.cli", "publish", str(source)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "published 8 records" in result.stdout
    assert "3 unreadable lines" in result.stdout

    purchases = read_topic(bootstrap, settings.topic_purchases, expect=2)
    feedback = read_topic(bootstrap, settings.topic_feedback, expect=1)
    customers = read_topic(bootstrap, settings.topic_customers, expect=5)
    assert sorted(orjson.loads(r.value)["event_id"] for r in purchases) == ["e-1", "e-2"]
    assert {r.key for r in purchases} == {b"c-1"}
    assert len({r.partition for r in purchases}) == 1  # one customer, one partition, in order
    assert [orjson.loads(r.value)["event_id"] for r in feedback] == ["e-3"]
    assert feedback[0].key == b"c-2"
    # The unreadable lines arrive byte for byte, unkeyed, for the engine to dead-letter.
    assert sorted(r.value for r in customers if r.key is None) == sorted([b"{not json", b"[1, 2]", b""])
    assert sorted(r.key for r in customers if r.key is not None) == [b"c-2", b"c-3"]
