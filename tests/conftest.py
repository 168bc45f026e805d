"""Shared fixtures: one real local Kafka broker for the whole test session; Prometheus' promtool."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.broker.local import LocalKafka, start_broker


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


def _prometheus_tool(name: str) -> str:
    """One of Prometheus' programs: the one the Makefile unpacked into .tools/, else one on PATH; else fail."""
    unpacked = Path(__file__).resolve().parents[1] / ".tools" / name
    found = str(unpacked) if unpacked.is_file() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: run `make .tools/{name}` (the Makefile's test target does this)")
    return found


@pytest.fixture(scope="session")
def promtool() -> str:
    """Prometheus' checker of configurations, rules and metric pages."""
    return _prometheus_tool("promtool")


@pytest.fixture(scope="session")
def prometheus() -> str:
    """The Prometheus server."""
    return _prometheus_tool("prometheus")


_TIERS = {
    "unit": "unit",
    "contract": "unit",
    "integration": "integration",
    "e2e": "e2e",
    "reliability": "e2e",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test gets the speed tier of its folder (tests/unit → unit, …), so `-m unit` is complete."""
    for item in items:
        folder = item.path.relative_to(config.rootpath / "tests").parts[0]
        tier = _TIERS.get(folder)
        if tier is None:
            raise pytest.UsageError(f"{item.nodeid}: tests live in one of tests/{{{','.join(_TIERS)}}}/")
        item.add_marker(getattr(pytest.mark, tier))
