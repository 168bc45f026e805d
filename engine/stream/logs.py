"""Log records as the settings ask: one JSON object per line (for log collectors) or plain text (for people).

WARNING and above must mean something an operator has to look at, so four lines the client libraries log at
those levels in healthy runs are lowered to INFO (`KnownNoise`); only these exact lines, and only while they are
benign.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from engine.settings import Settings

JSON_FIELDS = "%(levelname)s %(name)s %(process)d %(message)s"
CONSOLE_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"

COORDINATOR_LOGGER = "aiokafka.consumer.group_coordinator"
PRODUCER_LOGGER = "faust.transport.producer"
_BUFFER_FULL = re.compile(r"producer buffer full size \d+")
_REBALANCING = "Heartbeat failed for group %s because it is rebalancing"
_COORDINATOR_DEAD = "Marking the coordinator dead (node %s)for group %s."
_JOINED = "Joined group '%s' (generation %s) with member_id %s"


class KnownNoise(logging.Filter):
    """Lowers to INFO four known lines that are not faults; every other record passes as it is.

    - aiokafka's consumer logs `Group Coordinator Request failed: [Error 15] GroupCoordinatorNotAvailableError` at
      ERROR for every retry of its coordinator lookup (aiokafka 0.14 consumer/group_coordinator.py
      `ensure_coordinator_known`: `log.error(...)`, then it retries when `err.retriable`). Against a fresh broker the
      worker meets it at every start, while the broker creates `__consumer_offsets` (a second or so); the same client
      logic in kafka-python logs these retriable failures at DEBUG since dpkp/kafka-python#1975. Lowered only
      during a streak shorter than `grace` seconds: a coordinator still missing after that is a fault (offsets
      topic unavailable, broker unhealthy), and passes at ERROR. A streak ends after `gap` seconds without the line.
    - Then, against the same fresh broker, the coordinator found may answer the first JoinGroup with
      COORDINATOR_NOT_AVAILABLE while it loads the group: aiokafka logs that answer at DEBUG, looks the coordinator
      up again, and its `coordinator_dead` logs `Marking the coordinator dead (node N)for group G.` at WARNING.
      Lowered only before this worker first joins its group (aiokafka's "Joined group" line) and within `grace`
      seconds of start; once it has joined, a coordinator marked dead (a broker lost) stays WARNING.
    - Faust's producer buffer logs `producer buffer full size N` at WARNING whenever table changelog writes outpace
      the producer (faust 0.15 transport/producer.py `ProducerBuffer.wait_until_ebb`, then "producer flush took"
      at INFO): it is back-pressure doing its work, the stream waits for the buffer to drain, nothing is lost
      (faust-streaming/faust#173). Always lowered: a broker that does not take the writes is reported by the
      clients' own errors.
    - aiokafka's consumer logs `Heartbeat failed for group G because it is rebalancing` at WARNING when another
      worker joins or leaves the group (aiokafka 0.14 consumer/group_coordinator.py `_do_heartbeat`, on
      RebalanceInProgressError, then it rejoins): that is how a member learns of a rebalance, which Faust then logs
      at INFO. Always lowered: the other heartbeat failures (coordinator gone,
      generation or member unknown) stay WARNING.
    """

    def __init__(self, grace: float = 30.0, gap: float = 10.0) -> None:
        super().__init__()
        self.grace, self.gap = grace, gap
        self._streak_began = self._last_seen = float("-inf")
        self._began, self._joined = time.monotonic(), False

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == COORDINATOR_LOGGER and record.msg == _JOINED:
            self._joined = True
        elif (
            record.name == COORDINATOR_LOGGER
            and record.levelno == logging.WARNING
            and record.msg == _COORDINATOR_DEAD
            and not self._joined
            and time.monotonic() - self._began <= self.grace
        ):
            return self._lower(record, " (while the broker loads the group, at start: looked up again)")
        elif record.name == COORDINATOR_LOGGER and self._coordinator_not_available(record):
            now = time.monotonic()
            if now - self._last_seen > self.gap:
                self._streak_began = now
            self._last_seen = now
            if now - self._streak_began <= self.grace:
                return self._lower(record, " (retried: the broker is still electing the group's coordinator)")
        elif record.name == COORDINATOR_LOGGER and record.levelno == logging.WARNING and record.msg == _REBALANCING:
            return self._lower(record, " (another worker joined or left: the group shares the partitions again)")
        elif (
            record.name == PRODUCER_LOGGER
            and record.levelno == logging.WARNING
            and _BUFFER_FULL.fullmatch(record.getMessage())
        ):
            return self._lower(record, " (back-pressure: the stream waits for the producer)")
        return True

    @staticmethod
    def _coordinator_not_available(record: logging.LogRecord) -> bool:
        return (
            record.levelno == logging.ERROR
            and record.msg == "Group Coordinator Request failed: %s"
            and isinstance(record.args, tuple)
            and len(record.args) == 1
            and type(record.args[0]).__name__ == "GroupCoordinatorNotAvailableError"
        )

    @staticmethod
    def _lower(record: logging.LogRecord, why: str) -> bool:
        """The record at INFO with why it is not a fault; dropped if the logger does not log INFO."""
        record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        record.msg = f"{record.msg}{why}"
        return logging.getLogger(record.name).isEnabledFor(logging.INFO)


def logging_config(settings: Settings) -> dict[str, Any]:
    """A `logging.config.dictConfig` configuration: every logger (Faust's, aiokafka's, Escalera's) to standard
    output at the configured level, as JSON lines (`timestamp`, `level`, `logger`, `process`, `message`, and an
    `exc_info` traceback) or as plain text; the known noise of `KnownNoise` lowered to INFO."""
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
        "filters": {"known_noise": {"()": KnownNoise}},
        "handlers": {
            "stdout": {"class": "logging.StreamHandler", "formatter": "escalera", "stream": "ext://sys.stdout"},
        },
        # On the two loggers themselves (a logger's filters see the records it makes, before any handler): one
        # filter object, so one streak.
        "loggers": {name: {"filters": ["known_noise"]} for name in (COORDINATOR_LOGGER, PRODUCER_LOGGER)},
        "root": {"level": settings.log_level, "handlers": ["stdout"]},
    }
