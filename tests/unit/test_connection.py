"""Every Kafka client is given the same connection from the settings: kafka-python's options, aiokafka's options
and Faust's credentials agree on the protocol, the TLS trust and the SASL login, and none shows the password."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
from faust.auth import SASLCredentials, SSLCredentials

from engine.broker.connection import (
    aiokafka_options,
    aiokafka_security_options,
    faust_credentials,
    kafka_python_options,
    security,
)
from engine.broker.local.security import generate_security
from engine.settings import Settings, load_settings

pytestmark = pytest.mark.unit

PASSWORD = "pw-not-logged"
SASL_KEYS = {"sasl_mechanism", "sasl_plain_username", "sasl_plain_password"}


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real CA certificate (PEM), as `escalera kafka --sasl-ssl` makes for its clients."""
    return generate_security(tmp_path_factory.mktemp("tls")).ca_file


CASES = {
    "plaintext": {"ESCALERA_SECURITY_PROTOCOL": "PLAINTEXT"},
    "ssl-system-cas": {"ESCALERA_SECURITY_PROTOCOL": "SSL"},
    "ssl-ca-file": {"ESCALERA_SECURITY_PROTOCOL": "SSL", "ca": "yes"},
    "sasl-plaintext": {
        "ESCALERA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "ESCALERA_SASL_MECHANISM": "PLAIN",
        "ESCALERA_SASL_USERNAME": "shop",
        "ESCALERA_SASL_PASSWORD": PASSWORD,
    },
    "sasl-ssl-system-cas": {
        "ESCALERA_SECURITY_PROTOCOL": "SASL_SSL",
        "ESCALERA_SASL_MECHANISM": "SCRAM-SHA-256",
        "ESCALERA_SASL_USERNAME": "escalera",
        "ESCALERA_SASL_PASSWORD": PASSWORD,
    },
    "sasl-ssl-ca-file": {
        "ESCALERA_SECURITY_PROTOCOL": "SASL_SSL",
        "ESCALERA_SASL_USERNAME": "escalera",  # the default mechanism, SCRAM-SHA-512
        "ESCALERA_SASL_PASSWORD": PASSWORD,
        "ca": "yes",
    },
}


def settings_for(case: dict[str, str], ca_file: Path) -> Settings:
    env = {key: value for key, value in case.items() if key.startswith("ESCALERA_")}
    if "ca" in case:
        env["ESCALERA_SSL_CAFILE"] = str(ca_file)
    return load_settings({"ESCALERA_BOOTSTRAP_SERVERS": "k1:9092,k2:9093", **env})


def trusts(context: ssl.SSLContext, ca_file: Path) -> bool:
    """Whether the context loaded the CA file's certificate (the system's CAs are not listed by get_ca_certs)."""
    return ssl.PEM_cert_to_DER_cert(ca_file.read_text()) in context.get_ca_certs(binary_form=True)


@pytest.mark.parametrize("name", CASES)
def test_every_client_gets_the_same_connection(name: str, ca_file: Path) -> None:
    case = CASES[name]
    settings = settings_for(case, ca_file)
    protocol = settings.security_protocol
    tls, sasl = protocol.endswith("SSL"), protocol.startswith("SASL")

    kafka_python = kafka_python_options(settings)
    aiokafka = aiokafka_options(settings)
    credentials = faust_credentials(settings)

    # Same brokers, same protocol.
    assert kafka_python["bootstrap_servers"] == aiokafka["bootstrap_servers"] == ["k1:9092", "k2:9093"]
    assert kafka_python["security_protocol"] == aiokafka["security_protocol"] == protocol

    # Same SASL login, spelled alike by both client libraries, and carried by Faust's credentials.
    login = {key: kafka_python[key] for key in SASL_KEYS if key in kafka_python}
    assert login == {key: aiokafka[key] for key in SASL_KEYS if key in aiokafka}
    if sasl:
        assert login == {
            "sasl_mechanism": settings.sasl_mechanism,
            "sasl_plain_username": case["ESCALERA_SASL_USERNAME"],
            "sasl_plain_password": PASSWORD,
        }
        assert isinstance(credentials, SASLCredentials)
        assert credentials.mechanism.value == settings.sasl_mechanism
        assert (credentials.username, credentials.password) == (case["ESCALERA_SASL_USERNAME"], PASSWORD)
        assert credentials.protocol.value == protocol
        context = credentials.ssl_context
    else:
        assert login == {}
        if tls:
            assert isinstance(credentials, SSLCredentials)
            assert credentials.protocol.value == protocol
            context = credentials.context
        else:
            assert credentials is None  # Faust is given no credentials for PLAINTEXT
            context = None

    # TLS exactly when the protocol ends in SSL: kafka-python gets the CA file's path (only when set), aiokafka and
    # Faust a context verifying the broker that trusts that CA file.
    assert ("ssl_context" in aiokafka) is tls
    assert (context is not None) is tls
    assert "ssl_context" not in kafka_python
    assert kafka_python.get("ssl_cafile") == (str(ca_file) if tls and "ca" in case else None)
    for verifying in (aiokafka.get("ssl_context"), context):
        if verifying is None:
            continue
        assert verifying.verify_mode == ssl.CERT_REQUIRED and verifying.check_hostname
        assert trusts(verifying, ca_file) is ("ca" in case)

    # Nothing else differs between the two client libraries' options.
    assert set(kafka_python) - {"ssl_cafile"} == set(aiokafka) - {"ssl_context"}


@pytest.mark.parametrize("name", CASES)
def test_one_connection_is_aiokafka_options_without_the_servers(name: str, ca_file: Path) -> None:
    settings = settings_for(CASES[name], ca_file)
    alone = aiokafka_security_options(settings)
    client = aiokafka_options(settings)
    assert set(client) == {"bootstrap_servers", *alone}
    assert {k: v for k, v in alone.items() if k != "ssl_context"} == {
        k: v for k, v in client.items() if k not in {"bootstrap_servers", "ssl_context"}
    }


def test_a_ca_file_without_tls_is_not_used(ca_file: Path) -> None:
    settings = load_settings({"ESCALERA_SSL_CAFILE": str(ca_file)})  # PLAINTEXT
    assert kafka_python_options(settings) == {"bootstrap_servers": ["127.0.0.1:9092"], "security_protocol": "PLAINTEXT"}
    assert aiokafka_options(settings) == {"bootstrap_servers": ["127.0.0.1:9092"], "security_protocol": "PLAINTEXT"}
    assert faust_credentials(settings) is None


def test_each_client_gets_a_context_of_its_own() -> None:
    settings = load_settings({"ESCALERA_SECURITY_PROTOCOL": "SSL"})
    first: Any = aiokafka_options(settings)["ssl_context"]
    assert first is not aiokafka_options(settings)["ssl_context"]
    credentials = faust_credentials(settings)
    assert isinstance(credentials, SSLCredentials) and credentials.context is not first


def test_no_repr_shows_the_password(ca_file: Path) -> None:
    settings = settings_for(CASES["sasl-ssl-ca-file"], ca_file)
    found = security(settings)
    assert found.sasl is not None and found.sasl.username == "escalera"
    assert PASSWORD not in repr(found) + str(found) + repr(found.sasl)
    assert PASSWORD not in repr(faust_credentials(settings))  # Faust may log its credentials object
    assert PASSWORD not in repr(kafka_python_options(settings).keys()) + repr(aiokafka_options(settings).keys())
