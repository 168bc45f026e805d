"""Shared fixtures: one real local Kafka broker for the whole test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from engine.local_kafka import LocalKafka, start_broker


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[LocalKafka]:
    """A real single-node KRaft broker on 127.0.0.1; if it cannot start, the tests that need it fail."""
    broker = start_broker()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def bootstrap(kafka_broker: LocalKafka) -> str:
    """The broker's `host:port`."""
    return kafka_broker.bootstrap_servers
