"""The Faust app is configured only from the settings."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from faust.auth import SASLCredentials

from engine.errors import SettingsError
from engine.settings import load_settings
from engine.stream.app import create_app


def test_app_follows_the_settings(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "ESCALERA_BOOTSTRAP_SERVERS": "k1:9092,k2:9093",
            "ESCALERA_APP_ID": "shop-loyalty",
            "ESCALERA_TOPIC_PARTITIONS": "6",
            "ESCALERA_TOPIC_PURCHASES": "shop.purchases",
            "ESCALERA_TABLE_STORE": "memory",
            "ESCALERA_DATA_DIR": str(tmp_path),
            "ESCALERA_WEB_PORT": "7001",
        }
    )
    topology = create_app(settings)
    conf = topology.app.conf
    assert conf.id == "shop-loyalty"
    assert [str(url) for url in conf.broker] == ["kafka://k1:9092", "kafka://k2:9093"]
    assert str(conf.store) == "memory:"
    assert conf.web_port == 7001
    assert conf.processing_guarantee.value == "at_least_once"
    assert topology.customers.partitions == 6
    changelog = topology.customers.changelog_topic
    assert changelog.get_topic_name() == "shop-loyalty-customers-changelog" == settings.changelog_topic
    # an erased customer's earlier states leave the changelog within the configured delay (a day by default)
    assert changelog.config == {"max.compaction.lag.ms": "86400000", "delete.retention.ms": "86400000"}


def test_the_app_is_given_the_brokers_credentials(tmp_path: Path) -> None:
    # what each protocol gives is tested with the other clients' options in tests/unit/test_connection.py
    base = {"ESCALERA_TABLE_STORE": "memory", "ESCALERA_DATA_DIR": str(tmp_path)}
    assert create_app(load_settings(base)).app.conf.broker_credentials is None
    secured = {
        **base,
        "ESCALERA_SECURITY_PROTOCOL": "SASL_SSL",
        "ESCALERA_SASL_USERNAME": "escalera",
        "ESCALERA_SASL_PASSWORD": "pw-not-logged",
    }
    credentials = create_app(load_settings(secured)).app.conf.broker_credentials
    assert isinstance(credentials, SASLCredentials)
    assert (credentials.username, credentials.mechanism.value) == ("escalera", "SCRAM-SHA-512")
    assert credentials.ssl_context is not None


def test_the_worker_binds_where_told_and_advertises_a_host_other_workers_can_reach(tmp_path: Path) -> None:
    base = {"ESCALERA_TABLE_STORE": "memory", "ESCALERA_DATA_DIR": str(tmp_path)}
    local = create_app(load_settings(base)).app.conf
    assert (local.web_bind, str(local.canonical_url)) == ("127.0.0.1", "http://127.0.0.1:6066")
    opened = create_app(load_settings({**base, "ESCALERA_WEB_HOST": "0.0.0.0"})).app.conf
    assert opened.web_bind == "0.0.0.0" and str(opened.canonical_url) == f"http://{socket.gethostname()}:6066"
    named = {**base, "ESCALERA_WEB_HOST": "0.0.0.0", "ESCALERA_WEB_ADVERTISED_HOST": "worker-2"}
    assert str(create_app(load_settings(named)).app.conf.canonical_url) == "http://worker-2:6066"


def test_a_silent_worker_is_given_up_after_the_configured_session_timeout(tmp_path: Path) -> None:
    base = {"ESCALERA_TABLE_STORE": "memory", "ESCALERA_DATA_DIR": str(tmp_path)}
    conf = create_app(load_settings({**base, "ESCALERA_SESSION_TIMEOUT_SECONDS": "6"})).app.conf
    assert (conf.broker_session_timeout, conf.broker_heartbeat_interval) == (6.0, 2.0)
    assert create_app(load_settings(base)).app.conf.broker_session_timeout == 20.0
    with pytest.raises(SettingsError, match="ESCALERA_SESSION_TIMEOUT_SECONDS"):
        load_settings({"ESCALERA_SESSION_TIMEOUT_SECONDS": "1"})


def test_the_worker_runs_on_uvloop_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    import uvloop

    from engine.stream.app import use_event_loop

    chosen: list[object] = []
    monkeypatch.setattr(asyncio, "set_event_loop_policy", chosen.append)
    use_event_loop(load_settings({}))
    assert len(chosen) == 1 and isinstance(chosen[0], uvloop.EventLoopPolicy)
    use_event_loop(load_settings({"ESCALERA_EVENT_LOOP": "asyncio"}))
    assert len(chosen) == 1  # Python's own loop: nothing changed
    with pytest.raises(SettingsError, match="ESCALERA_EVENT_LOOP"):
        load_settings({"ESCALERA_EVENT_LOOP": "tokio"})


def test_uvloop_asked_for_but_missing_is_one_line_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from engine.stream.app import use_event_loop

    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` raises ImportError
    with pytest.raises(SettingsError) as raised:
        use_event_loop(load_settings({}))
    assert str(raised.value) == (
        "ESCALERA_EVENT_LOOP=uvloop but uvloop is not installed here: install it (pip install uvloop), "
        "or set ESCALERA_EVENT_LOOP=asyncio"
    )


def test_rocksdb_memory_is_sized_on_purpose(tmp_path: Path) -> None:
    """Faust's defaults give every partition a 2 GiB block cache and 3 write buffers of 64 MB (issue 18)."""
    settings = load_settings({"ESCALERA_DATA_DIR": str(tmp_path), "ESCALERA_TOPIC_PARTITIONS": "2"})
    table = create_app(settings).customers
    options = table.data.rocksdb_options
    assert options.block_cache_size == 32 * 1024 * 1024
    assert options.write_buffer_size * options.max_write_buffer_number == 32 * 1024 * 1024
