"""Before a command uses Kafka: one connection to a bootstrap server, so that a wrong password or an untrusted
certificate stops it at once with a message that names the setting to fix.

Why not let the clients fail on their own: neither library surfaces these errors at start-up.
- kafka-python 3.0 logs "Connection failed: ..." and retries the bootstrap until its 30 s timeout, then raises a
  bare KafkaTimeoutError('Unable to bootstrap from ...') (measured with 3.0.12, for a wrong password and for an
  untrusted certificate alike; dpkp/kafka-python#2994 raises SaslAuthenticationFailedError only on a connection
  to a known node, not while bootstrapping).
- aiokafka's client bootstrap (Faust's worker) logs each host's error and raises
  KafkaConnectionError('Unable to bootstrap from ...') without the cause (aiokafka/client.py `bootstrap`), and
  Faust then restarts its consumer in a loop.
aiokafka's single connection (`aiokafka.conn.create_conn`) does raise the real error, at once: it is used here.

A broker that is not up (refused, unresolvable, silent) is tried again for ESCALERA_BROKER_WAIT_SECONDS (5 s by
default: a wrong address is told within seconds, not after the clients' own 30 s); whoever waits is told so at once
through `on_wait`, with the address and the variable that sets it.

Nothing here logs or shows the password: messages name the user, the server and the variables only.
"""

from __future__ import annotations

import asyncio
import importlib
import ssl
import time
from collections.abc import Callable
from typing import Any

from engine.broker.connection import aiokafka_security_options
from engine.errors import EscaleraError
from engine.settings import ENV_PREFIX, Settings

_ATTEMPT_SECONDS = 10.0
_RETRY_SECONDS = 0.5
_SILENT_SECONDS = 2.0  # a first attempt still pending after this long (a host that drops packets) is waited for


class BrokerCheckError(EscaleraError):
    """The brokers cannot be used with the configured address, security protocol or credentials."""


class BrokerAuthenticationError(BrokerCheckError):
    """The broker refused the SASL user name or password (or the mechanism)."""


class BrokerTrustError(BrokerCheckError):
    """The TLS handshake failed: the broker's certificate is not trusted, or the listener does not speak TLS."""


class BrokerProtocolError(BrokerCheckError):
    """The broker closed the connection on the first request: its listener speaks another security protocol."""


class BrokerUnreachableError(BrokerCheckError):
    """No bootstrap server accepted a connection in time."""


def check_broker(settings: Settings, timeout: float | None = None, on_wait: Callable[[str], None] | None = None) -> str:
    """Connect to a bootstrap server as the clients will (TLS, SASL) and ask for metadata; return that server.

    A refused or timed-out connection is tried again until `timeout` (ESCALERA_BROKER_WAIT_SECONDS by default: the
    broker may be starting), and `on_wait` is called once with a line saying so as soon as the first attempt fails
    or has not been answered for two seconds; a security failure is final and raised at once.
    """
    wait = settings.broker_wait_seconds if timeout is None else timeout
    # A loop of its own, never made the thread's current one: the Faust worker sets up its loop afterwards.
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(_check(settings, wait, on_wait))
    finally:
        loop.close()


def waiting_line(settings: Settings, timeout: float, reason: str) -> str:
    """What a command says while it waits for the brokers: where, which variables to change, and why."""
    servers = ",".join(settings.bootstrap_servers)
    return (
        f"waiting for a Kafka broker at {servers} ({ENV_PREFIX}BOOTSTRAP_SERVERS) for up to {timeout:g} s "
        f"({ENV_PREFIX}BROKER_WAIT_SECONDS): {reason} ..."
    )


async def _check(settings: Settings, timeout: float, on_wait: Callable[[str], None] | None) -> str:
    # Loaded before the clock starts: on a busy machine the import alone may take a second, and a broker that
    # answers must not be reported as waited for.
    for module in ("aiokafka.conn", "aiokafka.errors", "aiokafka.protocol.metadata"):
        importlib.import_module(module)

    options = aiokafka_security_options(settings)
    deadline = time.monotonic() + timeout
    told = False

    def tell(reason: str) -> None:  # once, and only when there is time to wait
        nonlocal told
        if on_wait is not None and not told and timeout > 0:
            told = True
            on_wait(waiting_line(settings, timeout, reason))

    silent = asyncio.get_running_loop().call_later(_SILENT_SECONDS, tell, "no answer yet")
    try:
        return await _attempts(settings, timeout, deadline, options, tell)
    finally:
        silent.cancel()


async def _attempts(
    settings: Settings, timeout: float, deadline: float, options: dict[str, Any], tell: Callable[[str], None]
) -> str:
    from aiokafka.conn import create_conn
    from aiokafka.errors import (
        AuthenticationFailedError,
        IllegalSaslStateError,
        KafkaConnectionError,
        KafkaError,
        SaslAuthenticationFailed,
        UnsupportedSaslMechanismError,
    )
    from aiokafka.protocol.metadata import MetadataRequest

    last_error = "no attempt"
    while True:
        for server in settings.bootstrap_servers:
            host, _, port = server.rpartition(":")
            remaining = max(0.5, min(_ATTEMPT_SECONDS, deadline - time.monotonic()))
            try:
                async with asyncio.timeout(remaining):
                    conn = await create_conn(
                        host, int(port), client_id=f"{settings.app_id}-check",
                        request_timeout_ms=int(remaining * 1000), **options,
                    )  # fmt: skip
                    try:
                        # After SASL the broker answers anything; without it, a SASL listener closes here.
                        await conn.send(MetadataRequest([]))  # no topics: cheap
                    finally:
                        conn.close()
                return server
            except ssl.SSLCertVerificationError as error:
                raise BrokerTrustError(_untrusted(server, settings, error)) from None
            except (ssl.SSLError, ConnectionResetError) as error:
                if not isinstance(error, ConnectionResetError) or settings.security_protocol.endswith("SSL"):
                    # A plain listener closes the connection on the TLS hello: asyncio reports a bare
                    # ConnectionResetError (a blocking socket would say SSLEOFError).
                    reason = getattr(error, "reason", None) or "the connection was closed"
                    raise BrokerTrustError(
                        f"TLS handshake with {server} failed: {reason}: does this listener speak TLS? "
                        f"(check {ENV_PREFIX}SECURITY_PROTOCOL={settings.security_protocol})"
                    ) from None
                last_error = f"{server}: connection reset"
            except UnsupportedSaslMechanismError:
                raise BrokerAuthenticationError(
                    f"{server} does not offer the SASL mechanism {settings.sasl_mechanism}: "
                    f"check {ENV_PREFIX}SASL_MECHANISM"
                ) from None
            except KafkaConnectionError as error:
                # Connected, then closed on the first request: a TLS listener reading a plain request, or a SASL
                # listener receiving a request before authentication.
                raise BrokerProtocolError(
                    f"{server} closed the connection on the first request ({error}): its listener does not speak "
                    f"{settings.security_protocol}; check {ENV_PREFIX}SECURITY_PROTOCOL"
                ) from None
            except IllegalSaslStateError:  # the SASL handshake reached a listener without SASL
                raise BrokerProtocolError(
                    f"{server} does not speak SASL on this listener: check {ENV_PREFIX}SECURITY_PROTOCOL="
                    f"{settings.security_protocol}"
                ) from None
            except (SaslAuthenticationFailed, AuthenticationFailedError):
                # The broker's own reason ("invalid credentials") adds nothing, and says the same for a wrong
                # user as for a wrong password, on purpose.
                raise BrokerAuthenticationError(
                    f"authentication failed for user {settings.sasl_username!r} on {server} "
                    f"({settings.sasl_mechanism}): check {ENV_PREFIX}SASL_USERNAME / {ENV_PREFIX}SASL_PASSWORD"
                ) from None
            except KafkaError as error:  # any other answer: try again, then report it
                last_error = f"{server}: {type(error).__name__}: {error}"
            except ConnectionRefusedError:  # nothing listens there (yet)
                last_error = f"{server}: connection refused"
            except (OSError, TimeoutError) as error:  # unresolvable, unroutable, timed out: maybe not up yet
                last_error = f"{server}: {str(error) or type(error).__name__}"
            if len(settings.bootstrap_servers) == 1:  # the address is in the message already
                last_error = last_error.removeprefix(f"{server}: ")
            tell(last_error)
        left = deadline - time.monotonic()
        if left <= 0:
            servers = ",".join(settings.bootstrap_servers)
            raise BrokerUnreachableError(
                f"no Kafka broker answered at {servers} within {timeout:g} s ({last_error}): "
                f"check {ENV_PREFIX}BOOTSTRAP_SERVERS (or wait longer: {ENV_PREFIX}BROKER_WAIT_SECONDS)"
            )
        await asyncio.sleep(min(_RETRY_SECONDS, left))  # the last attempt at the deadline itself


def _untrusted(server: str, settings: Settings, error: ssl.SSLCertVerificationError) -> str:
    cafile = (
        f"{ENV_PREFIX}SSL_CAFILE={settings.ssl_cafile}"
        if settings.ssl_cafile
        else f"{ENV_PREFIX}SSL_CAFILE is not set, so only the system's CAs are trusted"
    )
    why = error.verify_message or error.reason or str(error)
    return f"TLS handshake with {server} failed: certificate not trusted ({cafile}): {why}"
