"""The one place that turns the connection settings into options for every Kafka client.

Escalera talks to Kafka through three client libraries: kafka-python (publish, topics, read-back, the demo's view),
aiokafka (the pre-flight check, the worker's own consumer) and Faust (the worker, which hands its credentials to
aiokafka). Each wants the same security settings in its own shape, and each used to build them itself: three copies
(`Settings.kafka_client_options`, `check.connection_options`, `app.broker_credentials`) that had to be kept in step
by hand. Here the settings are read once, by `security`, and each client's options are only a spelling of that:

- kafka-python takes the CA file's path (`ssl_cafile`, only when one is set: else the system's CAs);
- aiokafka and Faust take an `ssl.SSLContext` verifying the broker (`ssl.create_default_context` for server
  authentication, trusting the CA file if one is set, else the system's CAs);
- Faust's credentials are None for PLAINTEXT.

The password is kept as a `SecretStr` until the moment a client's options are built: nothing here logs it or shows
it in a repr (`Security` and `SaslLogin` print it masked; Faust's `SASLCredentials` repr names the user only).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from engine.settings import SaslMechanism, SecurityProtocol, Settings

if TYPE_CHECKING:
    from faust.auth import Credentials


@dataclass(frozen=True)
class SaslLogin:
    """The SASL user the clients authenticate as."""

    mechanism: SaslMechanism
    username: str
    password: SecretStr  # masked in every repr; unwrapped only into a client's options


@dataclass(frozen=True)
class Security:
    """How the clients connect: the protocol, the TLS trust (when the protocol uses TLS), the SASL login (when SASL)."""

    protocol: SecurityProtocol
    tls: bool  # the protocol ends in SSL: the broker's certificate is verified
    cafile: str | None  # the CA file to trust (None: the system's CAs); only set with TLS
    sasl: SaslLogin | None  # only set when the protocol starts with SASL

    def ssl_context(self) -> ssl.SSLContext | None:
        """A fresh context verifying the broker's certificate, for aiokafka and Faust; None without TLS."""
        if not self.tls:
            return None
        return ssl.create_default_context(purpose=ssl.Purpose.SERVER_AUTH, cafile=self.cafile)

    def sasl_options(self) -> dict[str, Any]:
        """The SASL options, spelled alike by kafka-python and aiokafka (empty without SASL)."""
        if self.sasl is None:
            return {}
        return {
            "sasl_mechanism": self.sasl.mechanism,
            "sasl_plain_username": self.sasl.username,
            "sasl_plain_password": self.sasl.password.get_secret_value(),
        }


def security(settings: Settings) -> Security:
    """The settings' security protocol, TLS trust and SASL login: the one reading every client's options share."""
    protocol = settings.security_protocol
    tls = protocol.endswith("SSL")
    sasl = None
    if protocol.startswith("SASL"):
        # the settings refuse SASL without credentials
        assert settings.sasl_username is not None and settings.sasl_password is not None
        sasl = SaslLogin(settings.sasl_mechanism, settings.sasl_username, settings.sasl_password)
    cafile = str(settings.ssl_cafile) if tls and settings.ssl_cafile is not None else None
    return Security(protocol=protocol, tls=tls, cafile=cafile, sasl=sasl)


def kafka_python_options(settings: Settings) -> dict[str, Any]:
    """Connection options for kafka-python clients (producers, consumers, admin): servers and security."""
    found = security(settings)
    options: dict[str, Any] = {
        "bootstrap_servers": list(settings.bootstrap_servers),
        "security_protocol": found.protocol,
        **found.sasl_options(),
    }
    if found.cafile is not None:
        options["ssl_cafile"] = found.cafile
    return options


def aiokafka_security_options(settings: Settings) -> dict[str, Any]:
    """aiokafka's security options alone (protocol, TLS context, SASL), as one connection (`create_conn`) takes them."""
    found = security(settings)
    options: dict[str, Any] = {"security_protocol": found.protocol}
    context = found.ssl_context()
    if context is not None:
        options["ssl_context"] = context
    return {**options, **found.sasl_options()}


def aiokafka_options(settings: Settings) -> dict[str, Any]:
    """Connection options for a plain aiokafka client (same broker and credentials as the app)."""
    return {"bootstrap_servers": list(settings.bootstrap_servers), **aiokafka_security_options(settings)}


def faust_credentials(settings: Settings) -> Credentials | None:
    """Faust's `broker_credentials` for the settings: None for PLAINTEXT."""
    from faust.auth import SASLCredentials, SSLCredentials  # here: the broker's other clients never load Faust

    found = security(settings)
    context = found.ssl_context()
    if found.sasl is not None:
        return SASLCredentials(
            username=found.sasl.username,
            password=found.sasl.password.get_secret_value(),
            ssl_context=context,
            mechanism=found.sasl.mechanism,
        )
    if context is not None:
        return SSLCredentials(context)
    return None
