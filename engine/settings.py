"""Escalera's settings: one frozen object read from `ESCALERA_*` environment variables."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from engine.errors import SettingsError

if TYPE_CHECKING:
    from schemas.decoder import DecodeLimits

ENV_PREFIX = "ESCALERA_"

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
TableStore = Literal["rocksdb", "memory"]
API_TOKEN_MIN = 16  # characters of ESCALERA_API_TOKEN at least: a short token is guessed
TopicName = Annotated[str, Field(min_length=1, max_length=249, pattern=r"^[A-Za-z0-9._-]+$")]


class Settings(BaseSettings):
    """Everything an Escalera process needs to know about its environment; every CLI command reads it."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    bootstrap_servers: Annotated[tuple[str, ...], NoDecode] = ("127.0.0.1:9092",)
    # How long `worker`, `publish` and `topics` wait at start for a bootstrap server to accept a connection before
    # they give up naming ESCALERA_BOOTSTRAP_SERVERS: a few seconds, so a wrong address is told at once; more where
    # the broker starts alongside the worker (0: one attempt).
    broker_wait_seconds: Annotated[float, Field(ge=0, le=3600)] = 5.0
    app_id: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")] = "escalera"
    web_host: str = "127.0.0.1"  # the interface the web port binds to: the query API stays local unless opened
    web_port: Annotated[int, Field(ge=1, le=65535)] = 6066
    # The host name other workers use to reach this one (Faust forwards a customer query to the worker owning the
    # customer's partition): by default the bound host, or this machine's name when bound to every interface.
    web_advertised_host: str | None = None
    # A bearer token the query API (/customers, /audiences) asks for when set; /metrics, /health and /ready stay open
    # (Prometheus, orchestrators). Workers send it to each other when they forward a query. Never printed.
    api_token: SecretStr | None = None
    data_dir: Path = Path("escalera-data")
    policy_file: Path | None = None

    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None

    topic_purchases: TopicName = "purchases"
    topic_feedback: TopicName = "feedback"
    topic_customers: TopicName = "customers"
    topic_perks: TopicName = "loyalty.perks"
    topic_transitions: TopicName = "loyalty.transitions"
    topic_dlq: TopicName = "loyalty.dlq"
    topic_partitions: Annotated[int, Field(ge=1, le=1024)] = 8
    topic_replication_factor: Annotated[int, Field(ge=1, le=16)] = 1

    table_store: TableStore = "rocksdb"
    # How long the group waits for a silent worker (crashed, frozen) before handing its partitions to the others;
    # the broker accepts 6 to 1800 s by default (group.min/max.session.timeout.ms). 20 s: a killed worker's
    # partitions are taken over by a standby in about 22 s (bench/restore.py, issue 18's target of 30 s), where
    # Faust's 60 s took 62; heartbeats come from Faust's consumer thread every 3 s, whatever the agent is doing.
    # A worker restarted after a crash does not wait for it (engine/stream/membership.py).
    session_timeout_seconds: Annotated[float, Field(ge=6, le=1800)] = 20.0
    wall_clock_when_idle: bool = True
    # How long an event waits for an input read to its end before it goes past it: events published up to this
    # many seconds apart on different topics are applied in event-time order (0: no wait, the lowest latency).
    arrival_grace_seconds: Annotated[float, Field(ge=0, le=300)] = 1.0
    # A policy switch (workers restarted with another policy) re-evaluates every customer at once; the perks it grants
    # go out at most this many per second per worker (0: no limit). engine/stream/switch.py
    switch_perks_per_second: Annotated[float, Field(ge=0, le=1_000_000)] = 100.0
    max_event_bytes: Annotated[int, Field(ge=256, le=16 * 1024 * 1024)] = 64 * 1024
    max_clock_skew_seconds: Annotated[int, Field(ge=0, le=7 * 24 * 3600)] = 300

    # How long an erased customer's earlier states may stay in the table's changelog before Kafka's log cleaner
    # removes them (the changelog's max.compaction.lag.ms; its tombstone is kept as long): 1 s to 30 days.
    erasure_max_delay_seconds: Annotated[int, Field(ge=1, le=30 * 24 * 3600)] = 24 * 3600

    # The worker's event loop: uvloop (libuv; lifts Faust's own per-record cost, bench/stream.py, issue 18) or
    # Python's asyncio (where uvloop is not installed: Windows).
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"

    @field_validator("bootstrap_servers", mode="before")
    @classmethod
    def _split_servers(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("bootstrap_servers")
    @classmethod
    def _check_servers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("give at least one host:port")
        for server in value:
            host, sep, port = server.rpartition(":")
            if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
                raise ValueError(f"{server!r} is not host:port")
        return value

    @field_validator("policy_file", "ssl_cafile")
    @classmethod
    def _file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @field_validator("api_token")
    @classmethod
    def _usable_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            token = value.get_secret_value()
            if len(token) < API_TOKEN_MIN or not all(33 <= ord(c) <= 126 for c in token):
                raise ValueError(
                    f"give at least {API_TOKEN_MIN} printable ASCII characters without spaces "
                    "(e.g. `openssl rand -hex 32`)"
                )
        return value

    @model_validator(mode="after")
    def _credentials_for_sasl(self) -> Settings:
        if self.security_protocol.startswith("SASL") and not (self.sasl_username and self.sasl_password):
            raise ValueError(
                f"{ENV_PREFIX}SECURITY_PROTOCOL={self.security_protocol} needs "
                f"{ENV_PREFIX}SASL_USERNAME and {ENV_PREFIX}SASL_PASSWORD"
            )
        return self

    @property
    def advertised_host(self) -> str:
        """The host in this worker's URL as other workers see it."""
        if self.web_advertised_host:
            return self.web_advertised_host
        return socket.gethostname() if self.web_host in {"0.0.0.0", "::", ""} else self.web_host

    @property
    def inbound_topics(self) -> tuple[str, str, str]:
        """The topics platforms publish to."""
        return (self.topic_purchases, self.topic_feedback, self.topic_customers)

    @property
    def internal_topic(self) -> str:
        """Referral credits, rerouted events and clock ticks, between the worker's own partitions."""
        return f"{self.app_id}-internal"

    @property
    def changelog_topic(self) -> str:
        """The customer table's changelog (Faust's name for it: app id, table name, "changelog")."""
        return f"{self.app_id}-customers-changelog"

    @property
    def partition_stats_topic(self) -> str:
        """Each partition's population summary (window spends, latest event time), read by every worker."""
        return f"{self.app_id}-partition-stats"

    @property
    def table_store_url(self) -> str:
        """Faust's store URL for the chosen table store."""
        return f"{self.table_store}://"

    def decode_limits(self, currencies: frozenset[str]) -> DecodeLimits:
        """What the decoder accepts under these settings (event size, clock skew), for the given currencies."""
        from schemas.decoder import DecodeLimits  # here: most commands never decode, and need not load it

        return DecodeLimits(
            max_bytes=self.max_event_bytes,
            max_skew=timedelta(seconds=self.max_clock_skew_seconds),
            currencies=currencies,
        )


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the settings; a wrong value raises SettingsError naming the variable."""
    env = os.environ if environ is None else environ
    values = {
        key[len(ENV_PREFIX) :].lower(): value
        for key, value in env.items()
        if key.startswith(ENV_PREFIX) and value != ""
    }
    unknown = sorted(f"{ENV_PREFIX}{name.upper()}" for name in values if name not in Settings.model_fields)
    if unknown:
        raise SettingsError(f"unknown setting(s): {', '.join(unknown)} (see README, 'Configuration')")
    try:
        # Values are handed over explicitly so the result depends only on `env`.
        return Settings.model_validate(values)
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        variable = f"{ENV_PREFIX}{field.upper()}" if field else "settings"
        given = error.get("input")
        shown = "" if field in {"sasl_password", "api_token"} or isinstance(given, dict) else f" (got {given!r})"
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"{variable}: {message}{shown}")
    return "invalid configuration:\n  " + "\n  ".join(lines)
