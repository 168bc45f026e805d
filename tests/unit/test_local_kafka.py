"""The local broker launcher says what is missing and how to install it."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.broker.local import free_port, jars
from engine.errors import LocalKafkaError

pytestmark = pytest.mark.unit


def test_missing_java_is_explained(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LocalKafkaError, match=r"Java 17\+ is needed .*apt-get install openjdk-17"):
        jars.require_java()


def test_missing_maven_is_explained(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LocalKafkaError, match=r"Maven is needed .*apt-get install maven"):
        jars.require_maven()


def test_old_java_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "java"
    fake.write_text("#!/bin/sh\necho 'openjdk version \"11.0.2\" 2019-01-15' >&2\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LocalKafkaError, match="needs Java 17 or newer"):
        jars.require_java()


def test_a_failed_maven_fetch_shows_its_output(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "mvn"
    fake.write_text("#!/bin/sh\necho '[ERROR] Could not resolve dependencies: no route' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(LocalKafkaError, match=r"(?s)exit 1.*Could not resolve dependencies"):
        jars.broker_jars()
    # Nothing half-fetched is left to be mistaken for a complete cache.
    assert not list((tmp_path / "cache").rglob(".complete"))


def test_launcher_files_are_found() -> None:
    files = {path.name for path in jars.deploy_dir().iterdir()}
    assert {"pom.xml", "server.properties", "log4j2.yaml"} <= files


def test_free_port_is_bindable() -> None:
    import socket

    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
