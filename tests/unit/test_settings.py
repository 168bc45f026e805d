"""Settings come from ESCALERA_* variables; a wrong value stops start-up naming the variable."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from engine.errors import SettingsError
from engine.settings import load_settings
from schemas.decoder import DEFAULT_LIMITS, DecodeLimits

pytestmark = pytest.mark.unit


def test_defaults_need_no_environment() -> None:
    settings = load_settings({})
    assert settings.bootstrap_servers == ("127.0.0.1:9092",)
    assert settings.inbound_topics == ("purchases", "feedback", "customers")
    assert (settings.topic_perks, settings.topic_transitions, settings.topic_dlq) == (
        "loyalty.perks",
        "loyalty.transitions",
        "loyalty.dlq",
    )
    assert settings.table_store_url == "rocksdb://"
    assert settings.max_event_bytes == 65536
    assert settings.broker_wait_seconds == 5.0  # a few seconds: a wrong address is told at once (issue 16)


def test_values_are_read_from_prefixed_variables(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("{}\n")
    settings = load_settings(
        {
            "ESCALERA_BOOTSTRAP_SERVERS": "k1:9092, k2:9093",
            "ESCALERA_WEB_PORT": "7000",
            "ESCALERA_DATA_DIR": str(tmp_path),
            "ESCALERA_POLICY_FILE": str(policy),
            "ESCALERA_TOPIC_PARTITIONS": "12",
            "ESCALERA_TABLE_STORE": "memory",
            "ESCALERA_WALL_CLOCK_WHEN_IDLE": "false",
            "ESCALERA_BROKER_WAIT_SECONDS": "60",
            "UNRELATED": "ignored",
        }
    )
    assert settings.bootstrap_servers == ("k1:9092", "k2:9093")
    assert settings.web_port == 7000
    assert settings.data_dir == tmp_path
    assert settings.policy_file == policy
    assert settings.topic_partitions == 12
    assert settings.table_store_url == "memory://"
    assert settings.wall_clock_when_idle is False
    assert settings.broker_wait_seconds == 60.0


def test_settings_are_frozen() -> None:
    settings = load_settings({})
    with pytest.raises(ValueError):
        settings.web_port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("variable", "value", "complaint"),
    [
        ("ESCALERA_WEB_PORT", "70000", "less than or equal to 65535"),
        ("ESCALERA_WEB_PORT", "http", "valid integer"),
        ("ESCALERA_BOOTSTRAP_SERVERS", "localhost", "is not host:port"),
        ("ESCALERA_BOOTSTRAP_SERVERS", " , ", "at least one host:port"),
        ("ESCALERA_TABLE_STORE", "redis", "'rocksdb' or 'memory'"),
        ("ESCALERA_SECURITY_PROTOCOL", "TLS", "PLAINTEXT"),
        ("ESCALERA_POLICY_FILE", "/nonexistent/policy.yaml", "no such file"),
        ("ESCALERA_TOPIC_DLQ", "dead letters", "should match pattern"),
        ("ESCALERA_TOPIC_PARTITIONS", "0", "greater than or equal to 1"),
        ("ESCALERA_BROKER_WAIT_SECONDS", "-1", "greater than or equal to 0"),
        ("ESCALERA_BROKER_WAIT_SECONDS", "soon", "valid number"),
    ],
)
def test_a_wrong_value_names_its_variable(variable: str, value: str, complaint: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings({variable: value})
    assert variable in str(error.value)
    assert complaint in str(error.value)


def test_a_misspelt_variable_is_refused() -> None:
    with pytest.raises(SettingsError, match=r"ESCALERA_BOOTSTRAP_SERVER\b"):
        load_settings({"ESCALERA_BOOTSTRAP_SERVER": "k:9092"})


def test_sasl_needs_credentials_and_never_shows_the_password() -> None:
    with pytest.raises(SettingsError, match="ESCALERA_SASL_USERNAME and ESCALERA_SASL_PASSWORD"):
        load_settings({"ESCALERA_SECURITY_PROTOCOL": "SASL_SSL"})
    settings = load_settings(
        {
            "ESCALERA_SECURITY_PROTOCOL": "SASL_SSL",
            "ESCALERA_SASL_USERNAME": "escalera",
            "ESCALERA_SASL_PASSWORD": "s3cret-value",
        }
    )
    assert "s3cret-value" not in repr(settings)
    assert (settings.sasl_mechanism, settings.sasl_username) == ("SCRAM-SHA-512", "escalera")
    assert settings.sasl_password is not None and settings.sasl_password.get_secret_value() == "s3cret-value"
    with pytest.raises(SettingsError) as error:
        load_settings({"ESCALERA_SASL_PASSWORD": "hunter2-secret", "ESCALERA_WEB_PORT": "x"})
    assert "hunter2-secret" not in str(error.value)


def test_decode_limits_follow_the_settings() -> None:
    settings = load_settings({"ESCALERA_MAX_EVENT_BYTES": "1024", "ESCALERA_MAX_CLOCK_SKEW_SECONDS": "90"})
    limits = settings.decode_limits(frozenset({"EUR", "USD"}))
    assert limits == DecodeLimits(max_bytes=1024, max_skew=timedelta(seconds=90), currencies=frozenset({"EUR", "USD"}))
    # the defaults are the decoder's own
    defaults = load_settings({}).decode_limits(frozenset({"EUR"}))
    assert (defaults.max_bytes, defaults.max_skew) == (DEFAULT_LIMITS.max_bytes, DEFAULT_LIMITS.max_skew)
