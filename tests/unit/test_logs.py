"""Logs are structured: with ESCALERA_LOG_FORMAT=json every record is one JSON object per line."""

from __future__ import annotations

import logging
import logging.config
from collections.abc import Iterator
from datetime import datetime

import orjson
import pytest

from engine.settings import load_settings
from engine.stream.logs import logging_config


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
