"""`escalera topics` (the compose stack's one-shot set-up) lists every topic, and fails with a message, not a trace.

The topics are created for real on the broker by the integration tests (engine.broker.topics.ensure_topics); here the
command's own part: what it prints, and its exit code when the brokers cannot be reached.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
import typer
from kafka.errors import KafkaTimeoutError
from typer.core import TyperGroup
from typer.testing import CliRunner

import engine.cli.broker as kafka_cli
from engine.broker.topics import loyalty_topics
from engine.cli import app, main
from engine.settings import Settings

pytestmark = pytest.mark.unit


def test_the_command_is_listed() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "topics" in result.stdout


def _command_paths(command: object, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The words that name every command and group of the CLI ((), ("publish",), ("schemas", "export"), ...)."""
    yield path
    if isinstance(command, TyperGroup):
        for name, sub in command.commands.items():
            yield from _command_paths(sub, (*path, name))


def test_no_flag_shows_a_type_in_any_help() -> None:
    # every flag (--help, --create-topics/--no-create-topics, ...) showed a `<bool>` as if it took a value
    paths = list(_command_paths(typer.main.get_command(app)))
    assert ("publish",) in paths and ("schemas", "export") in paths
    for path in paths:
        result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "160"})
        assert result.exit_code == 0, (path, result.output)
        assert "<bool>" not in result.stdout, (path, result.stdout)
        assert "Show this message and exit." in result.stdout
    simulate = CliRunner().invoke(app, ["simulate", "--help"], env={"COLUMNS": "160"}).stdout
    assert "<int>" in simulate and "<file>" in simulate  # options that take a value still show its type


def test_every_topic_is_printed_once_with_its_partitions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kafka_cli, "check_broker", lambda settings, **_: "kafka:19092")  # the broker answers
    monkeypatch.setattr(kafka_cli, "ensure_topics", lambda settings: ["purchases", "escalera-internal"])
    result = CliRunner().invoke(
        app, ["topics"], env={"ESCALERA_TOPIC_PARTITIONS": "4", "ESCALERA_BOOTSTRAP_SERVERS": "kafka:19092"}
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    expected = loyalty_topics(Settings(topic_partitions=4))
    assert [line.split("\t")[0] for line in lines] == [spec.name for spec in expected]
    assert all("\tpartitions=4\t" in line for line in lines)
    states = {line.split("\t")[0]: line.split("\t")[-1] for line in lines}
    assert states["purchases"] == states["escalera-internal"] == "created"
    assert states["loyalty.dlq"] == "exists"


def test_unreachable_brokers_end_with_a_message_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def unreachable(settings: Settings) -> list[str]:
        raise KafkaTimeoutError("Unable to bootstrap from ['kafka:19092']")

    monkeypatch.setattr(kafka_cli, "check_broker", lambda settings, **_: "kafka:19092")  # it answered, then failed
    monkeypatch.setattr(kafka_cli, "ensure_topics", unreachable)
    monkeypatch.setenv("ESCALERA_BOOTSTRAP_SERVERS", "kafka:19092")
    monkeypatch.setattr(sys, "argv", ["escalera", "topics"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("escalera: could not create or check the topics on kafka:19092")
    assert "KafkaTimeoutError" in err
    assert "Traceback" not in err
