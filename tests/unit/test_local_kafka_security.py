"""The SASL_SSL material of the local broker: a CA and a certificate a TLS client accepts (and one made by another
CA it refuses), a secret password kept out of files others read, out of reprs and off command lines; the broker's
properties for a secured and for a plain broker."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509

from engine.broker.local import broker
from engine.broker.local.security import generate_security, prepare_security
from engine.cli.broker import _client_exports

pytestmark = pytest.mark.unit


def test_the_files_are_made_and_the_private_ones_are_private(tmp_path: Path) -> None:
    security = generate_security(tmp_path / "tls")
    assert security.ca_file.read_text().startswith("-----BEGIN CERTIFICATE-----")
    keystore = security.keystore_file.read_text()
    # Kafka's PEM keystore: an unencrypted PKCS#8 key, then the chain (broker certificate, then the CA).
    assert keystore.startswith("-----BEGIN PRIVATE KEY-----")
    assert keystore.count("-----BEGIN CERTIFICATE-----") == 2
    for private in (security.keystore_file, security.password_file):
        assert private.stat().st_mode & 0o777 == 0o600, private
    assert security.password_file.read_text() == security.password.get_secret_value()


def test_the_certificate_names_the_local_broker_and_is_signed_by_the_ca(tmp_path: Path) -> None:
    security = generate_security(tmp_path)
    ca = x509.load_pem_x509_certificate(security.ca_file.read_bytes())
    leaf = x509.load_pem_x509_certificates(security.keystore_file.read_bytes())[0]
    leaf.verify_directly_issued_by(ca)
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def _handshake(server_keystore: Path, client_ca: Path) -> None:
    """A TLS handshake on 127.0.0.1 between a server using the keystore and a client trusting only `client_ca`."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(server_keystore)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            connection, _ = listener.accept()
            try:
                with server_context.wrap_socket(connection, server_side=True) as tls:
                    tls.recv(1)
            except (ssl.SSLError, OSError):
                pass

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        client_context = ssl.create_default_context(cafile=str(client_ca))
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
                client_context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
            ):
                tls.sendall(b"x")
        finally:
            thread.join(5)


def test_a_client_trusting_the_ca_accepts_the_broker_and_one_trusting_another_ca_refuses_it(tmp_path: Path) -> None:
    security = generate_security(tmp_path / "ours")
    _handshake(security.keystore_file, security.ca_file)
    other = generate_security(tmp_path / "theirs")
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(security.keystore_file, other.ca_file)


def test_passwords_are_random_and_hidden_from_reprs(tmp_path: Path) -> None:
    first, second = generate_security(tmp_path / "a"), generate_security(tmp_path / "b")
    secret = first.password.get_secret_value()
    assert secret != second.password.get_secret_value() and len(secret) >= 24
    assert secret not in repr(first) + str(first)


def test_kept_material_is_reused_for_a_kept_data_directory(tmp_path: Path) -> None:
    made = generate_security(tmp_path)
    again = prepare_security(tmp_path)
    assert again == made
    assert prepare_security(tmp_path / "new").password != made.password


def test_the_storage_tool_gets_a_salted_password_only(tmp_path: Path) -> None:
    security = generate_security(tmp_path)
    argument = broker._scram_argument(security)
    secret = security.password.get_secret_value()
    assert secret not in argument
    found = re.fullmatch(
        r'SCRAM-SHA-512=\[name=escalera,salt="([^"]+)",saltedpassword="([^"]+)",iterations=(\d+)\]', argument
    )
    assert found is not None, argument
    salt, salted, iterations = base64.b64decode(found[1]), base64.b64decode(found[2]), int(found[3])
    assert iterations >= 4096  # Kafka's minimum for SCRAM
    assert hashlib.pbkdf2_hmac("sha512", secret.encode(), salt, iterations) == salted


def test_a_secured_broker_keeps_its_own_listeners_plaintext_on_loopback(tmp_path: Path) -> None:
    security = generate_security(tmp_path / "tls")
    path = broker._write_properties(tmp_path, 9093, 9094, security, 9095)
    text = path.read_text()
    assert "listeners=SASL_SSL://127.0.0.1:9093,INTERNAL://127.0.0.1:9095,CONTROLLER://127.0.0.1:9094\n" in text
    assert "advertised.listeners=SASL_SSL://127.0.0.1:9093,INTERNAL://127.0.0.1:9095\n" in text
    assert "listener.security.protocol.map=SASL_SSL:SASL_SSL,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT\n" in text
    assert "inter.broker.listener.name=INTERNAL\n" in text
    assert "sasl.enabled.mechanisms=SCRAM-SHA-512\n" in text
    assert f"listener.name.sasl_ssl.ssl.keystore.location={security.keystore_file}\n" in text
    assert security.password.get_secret_value() not in text


def test_a_plain_broker_gets_the_plaintext_properties_as_before(tmp_path: Path) -> None:
    text = broker._write_properties(tmp_path, 9093, 9094).read_text()
    assert "listeners=PLAINTEXT://127.0.0.1:9093,CONTROLLER://127.0.0.1:9094\n" in text
    assert "advertised.listeners=PLAINTEXT://127.0.0.1:9093\n" in text
    assert "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n" in text
    assert "inter.broker.listener.name=PLAINTEXT\n" in text
    assert "sasl." not in text and "ssl." not in text and "INTERNAL" not in text


def test_the_printed_exports_read_the_password_from_its_file(tmp_path: Path) -> None:
    security = generate_security(tmp_path)
    printed = _client_exports("127.0.0.1:9093", security)
    assert security.password.get_secret_value() not in printed
    assert f'export ESCALERA_SASL_PASSWORD="$(cat {security.password_file})"' in printed
    assert "export ESCALERA_SECURITY_PROTOCOL=SASL_SSL" in printed
