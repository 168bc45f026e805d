"""Throw-away TLS and SCRAM material for a local SASL_SSL broker: a CA, a broker certificate, a user.

Everything is generated fresh into one directory, for a broker on 127.0.0.1 that lives as long as a test or a
local run. The CA's private key is never written: nothing else can ever be signed by it.
"""

from __future__ import annotations

import datetime
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from engine.errors import LocalKafkaError

MECHANISM = "SCRAM-SHA-512"
CA_FILE = "ca.pem"
KEYSTORE_FILE = "broker-keystore.pem"
PASSWORD_FILE = "sasl-password"
USERNAME_FILE = "sasl-username"
VALID_DAYS = 30


@dataclass(frozen=True)
class BrokerSecurity:
    """What a SASL_SSL broker and its clients share: the CA clients trust, the broker's key, one SCRAM user."""

    directory: Path
    username: str
    password: SecretStr  # shown as '**********' in reprs; the clear text is in `password_file` (mode 0600)
    mechanism: str = MECHANISM

    @property
    def ca_file(self) -> Path:
        """The CA certificate (PEM) clients trust: ESCALERA_SSL_CAFILE."""
        return self.directory / CA_FILE

    @property
    def keystore_file(self) -> Path:
        """The broker's unencrypted PKCS#8 private key followed by its certificate chain (PEM, mode 0600)."""
        return self.directory / KEYSTORE_FILE

    @property
    def password_file(self) -> Path:
        """The SCRAM password alone, mode 0600: read it into ESCALERA_SASL_PASSWORD, never print it."""
        return self.directory / PASSWORD_FILE

    def client_env(self, bootstrap: str) -> dict[str, str]:
        """The ESCALERA_* variables a client needs to reach the broker (password included: not for printing)."""
        return {
            "ESCALERA_BOOTSTRAP_SERVERS": bootstrap,
            "ESCALERA_SECURITY_PROTOCOL": "SASL_SSL",
            "ESCALERA_SASL_MECHANISM": self.mechanism,
            "ESCALERA_SASL_USERNAME": self.username,
            "ESCALERA_SASL_PASSWORD": self.password.get_secret_value(),
            "ESCALERA_SSL_CAFILE": str(self.ca_file),
        }


def generate_security(directory: Path, username: str = "escalera") -> BrokerSecurity:
    """A fresh CA, a certificate for 127.0.0.1/localhost signed by it, and a random SCRAM password, in `directory`."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise LocalKafkaError(f"a SASL_SSL broker needs the `cryptography` package: {exc}") from None
    import ipaddress

    if not username or any(c in username for c in ",=[]\"' "):
        raise LocalKafkaError(f"{username!r} cannot be a SCRAM user name here (no spaces, quotes, ',', '=', '[', ']')")
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    not_before, not_after = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=VALID_DAYS)
    tag = secrets.token_hex(4)  # two generated CAs never share a name, so one cannot pass for the other

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Escalera local test CA {tag}")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    broker_key = ec.generate_private_key(ec.SECP256R1())
    broker_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(broker_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    pem = serialization.Encoding.PEM
    (directory / CA_FILE).write_bytes(ca_cert.public_bytes(pem))
    # Kafka's PEM keystore (ssl.keystore.type=PEM) wants a PKCS#8 key; unencrypted, it needs no ssl.key.password.
    key_pem = broker_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    _write_private(directory / KEYSTORE_FILE, key_pem + broker_cert.public_bytes(pem) + ca_cert.public_bytes(pem))
    password = secrets.token_urlsafe(24)  # URL-safe: no character the storage tool's --add-scram syntax reserves
    _write_private(directory / PASSWORD_FILE, password.encode())
    (directory / USERNAME_FILE).write_text(username)
    return BrokerSecurity(directory.resolve(), username, SecretStr(password))


def prepare_security(directory: Path) -> BrokerSecurity:
    """The material already in `directory` (a kept broker data directory knows only that user), else new."""
    files = [directory / name for name in (CA_FILE, KEYSTORE_FILE, PASSWORD_FILE, USERNAME_FILE)]
    if not all(path.is_file() for path in files):
        return generate_security(directory)
    username = (directory / USERNAME_FILE).read_text().strip()
    password = (directory / PASSWORD_FILE).read_text().strip()
    return BrokerSecurity(directory.resolve(), username, SecretStr(password))


def _write_private(path: Path, data: bytes) -> None:
    """Write a file only its owner can read (created 0600, never world-readable for a moment)."""
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
