"""Logs are structured: with ESCALERA_LOG_FORMAT=json every record is one JSON object per line; the client
libraries' known lines that are not faults are INFO, not WARNING or ERROR (issue 16)."""

from __future__ import annotations

import logging
import logging.config
from collections.abc import Iterator
from datetime import datetime

import orjson
import pytest

from engine.settings import load_settings
from engine.stream.logs import COORDINATOR_LOGGER, PRODUCER_LOGGER, KnownNoise, logging_config


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


def test_json_logs_are_one_object_per_line_with_time_level_logger_and_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logging.config.dictConfig(logging_config(load_settings({"ESCALERA_LOG_FORMAT": "json"})))
    logging.getLogger("escalera.worker").info("owning partitions %s", [0, 2])
    logging.getLogger("aiokafka").debug("not at INFO")
    try:
        raise ValueError("broken")
    except ValueError:
        logging.getLogger("faust").exception("agent crashed")
    lines = capsys.readouterr().out.splitlines()
    records = [orjson.loads(line) for line in lines]
    assert [(r["level"], r["logger"], r["message"]) for r in records] == [
        ("INFO", "escalera.worker", "owning partitions [0, 2]"),
        ("ERROR", "faust", "agent crashed"),
    ]
    assert datetime.fromisoformat(records[0]["timestamp"]).utcoffset() is not None
    assert "ValueError: broken" in records[1]["exc_info"]


def test_console_logs_are_plain_text_at_the_configured_level(capsys: pytest.CaptureFixture[str]) -> None:
    settings = load_settings({"ESCALERA_LOG_FORMAT": "console", "ESCALERA_LOG_LEVEL": "WARNING"})
    logging.config.dictConfig(logging_config(settings))
    logging.getLogger("escalera.worker").info("hidden")
    logging.getLogger("escalera.worker").warning("shown")
    out = capsys.readouterr().out
    assert "hidden" not in out and out.rstrip().endswith("[WARNING] escalera.worker: shown")


def test_known_start_up_and_back_pressure_lines_are_info_not_error_or_warning(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from aiokafka.errors import GroupAuthorizationFailedError, GroupCoordinatorNotAvailableError

    logging.config.dictConfig(logging_config(load_settings({"ESCALERA_LOG_FORMAT": "json"})))
    coordinator, producer = logging.getLogger(COORDINATOR_LOGGER), logging.getLogger(PRODUCER_LOGGER)
    # As aiokafka and Faust log them (aiokafka consumer/group_coordinator.py, faust transport/producer.py).
    coordinator.error("Group Coordinator Request failed: %s", GroupCoordinatorNotAvailableError())
    producer.warning("producer buffer full size 118")
    coordinator.warning("Heartbeat failed for group %s because it is rebalancing", "escalera")
    # Real faults, and the same words elsewhere, stay as they are.
    coordinator.error("Group Coordinator Request failed: %s", GroupAuthorizationFailedError())
    coordinator.error("Heartbeat session expired - marking coordinator dead")
    coordinator.warning("Heartbeat failed for group %s: generation id is not  current.", "escalera")
    producer.warning("producer buffer full size 118, and something else")
    logging.getLogger("escalera.worker").warning("producer buffer full size 118")
    records = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["level"], r["logger"], r["message"]) for r in records] == [
        (
            "INFO",
            COORDINATOR_LOGGER,
            "Group Coordinator Request failed: [Error 15] GroupCoordinatorNotAvailableError "
            "(retried: the broker is still electing the group's coordinator)",
        ),
        ("INFO", PRODUCER_LOGGER, "producer buffer full size 118 (back-pressure: the stream waits for the producer)"),
        (
            "INFO",
            COORDINATOR_LOGGER,
            "Heartbeat failed for group escalera because it is rebalancing "
            "(another worker joined or left: the group shares the partitions again)",
        ),
        ("ERROR", COORDINATOR_LOGGER, "Group Coordinator Request failed: [Error 30] GroupAuthorizationFailedError"),
        ("ERROR", COORDINATOR_LOGGER, "Heartbeat session expired - marking coordinator dead"),
        ("WARNING", COORDINATOR_LOGGER, "Heartbeat failed for group escalera: generation id is not  current."),
        ("WARNING", PRODUCER_LOGGER, "producer buffer full size 118, and something else"),
        ("WARNING", "escalera.worker", "producer buffer full size 118"),
    ]


def test_a_coordinator_missing_for_longer_than_the_grace_is_an_error_again(monkeypatch: pytest.MonkeyPatch) -> None:
    from aiokafka.errors import GroupCoordinatorNotAvailableError

    now = [1000.0]
    monkeypatch.setattr("engine.stream.logs.time.monotonic", lambda: now[0])
    noise = KnownNoise(grace=30, gap=10)

    def level_at(seconds: float) -> str:
        now[0] = 1000.0 + seconds
        record = logging.LogRecord(
            COORDINATOR_LOGGER, logging.ERROR, __file__, 1, "Group Coordinator Request failed: %s",
            (GroupCoordinatorNotAvailableError(),), None,
        )  # fmt: skip
        noise.filter(record)
        return record.levelname

    # A streak of retries every 0.1 s: lowered for 30 s, then errors; a new streak after a 10 s pause is lowered.
    assert {level_at(t / 10) for t in range(300)} == {"INFO"}
    assert [level_at(t) for t in (30.1, 30.2, 40)] == ["ERROR", "ERROR", "ERROR"]
    assert level_at(50.1) == "INFO"  # 10.1 s after the last one: a new streak (a coordinator moved, say)


def test_lowered_lines_are_not_shown_when_the_level_is_warning(capsys: pytest.CaptureFixture[str]) -> None:
    settings = load_settings({"ESCALERA_LOG_FORMAT": "console", "ESCALERA_LOG_LEVEL": "WARNING"})
    logging.config.dictConfig(logging_config(settings))
    logging.getLogger(PRODUCER_LOGGER).warning("producer buffer full size 118")
    assert capsys.readouterr().out == ""


def test_a_coordinator_marked_dead_is_info_only_before_the_group_is_first_joined(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr("engine.stream.logs.time.monotonic", lambda: now[0])

    def record(message: str, level: int, *args: object) -> logging.LogRecord:
        return logging.LogRecord(COORDINATOR_LOGGER, level, __file__, 1, message, args, None)

    def level_of(noise: KnownNoise, at: float) -> str:
        now[0] = 1000.0 + at
        dead = record("Marking the coordinator dead (node %s)for group %s.", logging.WARNING, 1, "escalera")
        noise.filter(dead)
        return dead.levelname

    starting = KnownNoise(grace=30)
    assert level_of(starting, 0.5) == "INFO"  # the first JoinGroup met a coordinator still loading the group
    starting.filter(record("Joined group '%s' (generation %s) with member_id %s", logging.INFO, "escalera", 1, "m"))
    assert level_of(starting, 60) == "WARNING"  # joined once: a coordinator lost later is a broker lost
    now[0] = 1000.0
    never_joined = KnownNoise(grace=30)
    assert level_of(never_joined, 31) == "WARNING"  # not joined after 30 s: not start-up any more
