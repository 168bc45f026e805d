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

Nothing here logs or shows the password: messages name the user, the server and the variables only.
"""

from __future__ import annotations

import asyncio
import ssl
import time

from engine.broker.connection import aiokafka_security_options
from engine.errors import EscaleraError
from engine.settings import ENV_PREFIX, Settings

DEFAULT_TIMEOUT_SECONDS = 30.0  # as long as the clients' own bootstrap waits for a broker that is not up yet
_ATTEMPT_SECONDS = 10.0
_RETRY_SECONDS = 0.5


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


def check_broker(settings: Settings, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> str:
    """Connect to a bootstrap server as the clients will (TLS, SASL) and ask for metadata; return that server.

    A refused or timed-out connection is tried again until `timeout` (the broker may be starting); a security
    failure is final and raised at once.
    """
    # A loop of its own, never made the thread's current one: the Faust worker sets up its loop afterwards.
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(_check(settings, timeout))
    finally:
        loop.close()


async def _check(settings: Settings, timeout: float) -> str:
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

    options = aiokafka_security_options(settings)
    deadline = time.monotonic() + timeout
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
                if isinstance(error, ConnectionResetError) and not settings.security_protocol.endswith("SSL"):
                    last_error = f"{server}: connection reset"
                    continue
                # A plain listener closes the connection on the TLS hello: asyncio reports a bare
                # ConnectionResetError (a blocking socket would say SSLEOFError).
                reason = getattr(error, "reason", None) or "the connection was closed"
                raise BrokerTrustError(
                    f"TLS handshake with {server} failed: {reason}: does this listener speak TLS? "
                    f"(check {ENV_PREFIX}SECURITY_PROTOCOL={settings.security_protocol})"
                ) from None
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
            except (OSError, TimeoutError) as error:  # refused, unresolvable, timed out: maybe not up yet
                last_error = f"{server}: {str(error) or type(error).__name__}"
        if time.monotonic() + _RETRY_SECONDS > deadline:
            servers = ",".join(settings.bootstrap_servers)
            raise BrokerUnreachableError(
                f"no Kafka broker answered at {servers} within {timeout:.0f} s (last: {last_error}); "
                f"check {ENV_PREFIX}BOOTSTRAP_SERVERS"
            )
        await asyncio.sleep(_RETRY_SECONDS)


def _untrusted(server: str, settings: Settings, error: ssl.SSLCertVerificationError) -> str:
    cafile = (
        f"{ENV_PREFIX}SSL_CAFILE={settings.ssl_cafile}"
        if settings.ssl_cafile
        else f"{ENV_PREFIX}SSL_CAFILE is not set, so only the system's CAs are trusted"
    )
    why = error.verify_message or error.reason or str(error)
    return f"TLS handshake with {server} failed: certificate not trusted ({cafile}): {why}"
