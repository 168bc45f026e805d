"""Log records as the settings ask: one JSON object per line (for log collectors) or plain text (for people)."""

from __future__ import annotations

from typing import Any

from engine.settings import Settings

JSON_FIELDS = "%(levelname)s %(name)s %(process)d %(message)s"
CONSOLE_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"


def logging_config(settings: Settings) -> dict[str, Any]:
    """A `logging.config.dictConfig` configuration: every logger (Faust's, aiokafka's, Escalera's) to standard
    output at the configured level, as JSON lines (`timestamp`, `level`, `logger`, `process`, `message`, and an
    `exc_info` traceback) or as plain text."""
    formatter: dict[str, Any]
    if settings.log_format == "json":
        formatter = {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": JSON_FIELDS,
            "rename_fields": {"levelname": "level", "name": "logger"},
            "timestamp": "timestamp",  # ISO 8601, UTC, microseconds
        }
    else:
        formatter = {"format": CONSOLE_FORMAT}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"escalera": formatter},
        "handlers": {
            "stdout": {"class": "logging.StreamHandler", "formatter": "escalera", "stream": "ext://sys.stdout"},
        },
        "root": {"level": settings.log_level, "handlers": ["stdout"]},
    }
