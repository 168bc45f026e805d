"""A worker's common mistakes and surprises, through the real `escalera` command (issue 16): a busy web port and an
unreachable broker end in seconds with one line naming the setting, a wait for the broker is told at once, a
healthy run logs nothing at WARNING or above, and `explain` keeps long explanations under their decision."""

from __future__ import annotations

import http.server
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.broker.local import free_port
from engine.cli.stream import WebPortError, check_web_port
from engine.settings import load_settings
from tests.integration.engine_harness import engine_env, metric, start_worker, wait_until

pytestmark = pytest.mark.e2e

ESCALERA = [sys.executable, "-m", "engine.cli"]


def clean_env(**variables: str) -> dict[str, str]:
    """This process's environment without its ESCALERA_* variables, plus `variables`."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("ESCALERA_")}, **variables}


def closed_port() -> str:
    """A 127.0.0.1 address nothing listens on: every connection is refused."""
    return f"127.0.0.1:{free_port()}"


def test_a_busy_web_port_is_named_in_one_line_within_seconds(tmp_path: Path) -> None:
    with socket.socket() as other:  # another worker, or anything, listening there
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        env = clean_env(
            ESCALERA_WEB_PORT=str(port),
            ESCALERA_BOOTSTRAP_SERVERS=closed_port(),  # never reached: the port is checked first
            ESCALERA_DATA_DIR=str(tmp_path / "tables"),
        )
        began = time.monotonic()
        result = subprocess.run(
            [*ESCALERA, "worker"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        seconds = time.monotonic() - began
    assert result.returncode == 2, result.stderr
    assert seconds < 10
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"escalera: the web port 127.0.0.1:{port} is already in use (another worker?): "
        "set ESCALERA_WEB_PORT to a free port, or stop what listens there"
    ]


def test_the_web_port_check_binds_as_aiohttp_does_so_time_wait_is_not_busy() -> None:
    # A worker just stopped leaves its port in TIME_WAIT (the closing side of a connection; its listener had
    # SO_REUSEADDR, set by asyncio): aiohttp binds it again, so the check must not call it busy.
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    served, _ = listener.accept()
    served.close()  # the server closes first: its side, on `port`, goes to TIME_WAIT
    time.sleep(0.1)
    client.close()
    listener.close()
    time.sleep(0.1)
    settings = load_settings({"ESCALERA_WEB_PORT": str(port)})
    check_web_port(settings)  # no error
    with socket.socket() as plain, pytest.raises(OSError):  # a bind without SO_REUSEADDR is refused: a real case
        plain.bind(("127.0.0.1", port))
    with pytest.raises(WebPortError, match="ESCALERA_WEB_HOST"):
        check_web_port(load_settings({"ESCALERA_WEB_HOST": "192.0.2.1"}))  # TEST-NET-1: not this machine's


def read_stderr_lines(process: subprocess.Popen[str], timeout: float) -> Iterator[tuple[float, str]]:
    """(seconds since the call, line) for each line of the process's stderr as it comes, until it ends."""
    assert process.stderr is not None
    began = time.monotonic()
    selector = selectors.DefaultSelector()
    selector.register(process.stderr, selectors.EVENT_READ)
    while time.monotonic() - began < timeout:
        if selector.select(timeout=0.1):
            line = process.stderr.readline()
            if not line:
                return
            yield time.monotonic() - began, line.rstrip("\n")
    process.kill()
    raise AssertionError(f"still running after {timeout} s")


@pytest.mark.parametrize(
    ("command", "wait"),
    [(["worker"], None), (["publish", "EVENTS"], "1"), (["topics"], "1")],
    ids=["worker", "publish", "topics"],
)
def test_an_unreachable_broker_is_told_at_once_then_named_within_seconds(
    tmp_path: Path, command: list[str], wait: str | None
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("{}\n")
    server = closed_port()
    env = clean_env(
        ESCALERA_BOOTSTRAP_SERVERS=server,
        ESCALERA_WEB_PORT=str(free_port()),
        ESCALERA_DATA_DIR=str(tmp_path / "tables"),
        **({"ESCALERA_BROKER_WAIT_SECONDS": wait} if wait else {}),  # the worker waits the default 5 s
    )
    process = subprocess.Popen(
        [*ESCALERA, *[str(events) if part == "EVENTS" else part for part in command]],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines = list(read_stderr_lines(process, timeout=30))
    process.wait(10)
    waited = wait or "5"
    assert process.returncode == 2
    assert [line for _, line in lines] == [
        f"waiting for a Kafka broker at {server} (ESCALERA_BOOTSTRAP_SERVERS) for up to {waited} s "
        "(ESCALERA_BROKER_WAIT_SECONDS): connection refused ...",
        f"escalera: no Kafka broker answered at {server} within {waited} s (connection refused): "
        "check ESCALERA_BOOTSTRAP_SERVERS (or wait longer: ESCALERA_BROKER_WAIT_SECONDS)",
    ]
    told, ended = lines[0][0], lines[1][0]
    assert told < 3  # at once: the time to start Python and refuse one connection
    assert int(waited) - 1 < ended - told < int(waited) + 3


def test_a_healthy_worker_on_a_fresh_broker_logs_nothing_at_warning_or_above(tmp_path: Path) -> None:
    # A fresh broker: the worker's group meets GroupCoordinatorNotAvailable while __consumer_offsets is created;
    # a burst of events fills Faust's producer buffer. Both are logged by the libraries at ERROR/WARNING.
    port = free_port()
    kafka = subprocess.Popen(
        [*ESCALERA, "kafka", "--port", str(port)],
        env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert kafka.stdout is not None
        assert kafka.stdout.readline().strip() == f"kafka ready at 127.0.0.1:{port}"
        # Not the clients' default port: the line to paste is printed.
        assert kafka.stdout.readline().strip() == f"export ESCALERA_BOOTSTRAP_SERVERS=127.0.0.1:{port}"
        env = engine_env(f"127.0.0.1:{port}", partitions=4)
        events = tmp_path / "events.jsonl"
        subprocess.run(
            [*ESCALERA, "simulate", "--customers", "200", "--out", str(events)],
            env=clean_env(**env), check=True, capture_output=True,
        )  # fmt: skip
        lines = sum(1 for _ in events.open())
        worker = start_worker(env, tmp_path)
        try:
            published = subprocess.run(
                [*ESCALERA, "publish", str(events)], env=clean_env(**env), capture_output=True, text=True, timeout=60
            )
            assert published.returncode == 0, published.stderr
            wait_until(lambda: consumed(worker) >= lines, timeout=60, what=f"the worker consumed {lines} events")
        finally:
            assert worker.stop() == 0, worker.tail()
    finally:
        kafka.send_signal(signal.SIGTERM)
        kafka.communicate(timeout=60)
    records = [orjson.loads(line) for line in worker.log.read_text().splitlines()]
    alarming = [(r["level"], r["logger"], r["message"]) for r in records if r["level"] not in {"DEBUG", "INFO"}]
    assert alarming == []


def consumed(worker: Any) -> float:
    """Inbound events consumed, each once (a rerouted event is counted again where it lands)."""
    try:
        total = metric(worker, "escalera_events_consumed_total")
        return total - metric(worker, "escalera_events_consumed_total", outcome="rerouted")
    except (AssertionError, OSError):  # the web port is not up yet
        return 0.0


LONG = (
    "Reached the 'regular' step because the customer bought on 4 distinct days within the last 90 days, which is "
    "at least the policy's threshold of 3 purchase days for the step, and was not yet regular."
)


@pytest.fixture
def fake_worker() -> Iterator[str]:
    """A web server answering /customers/c-1 as a worker does."""
    customer = {
        "customer_id": "c-1",
        "as_of": "2026-06-30T00:00:00+00:00",
        "step": "regular",
        "figures": {"purchase_days_90d": 4},
        "recent_decisions": [
            {"at": "2026-06-29T10:00:00+00:00", "kind": "transition", "from": "new", "to": "regular",
             "rule": "step.regular", "explanation": LONG},
        ],
    }  # fmt: skip

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(customer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_explain_wraps_a_long_explanation_under_itself(fake_worker: str) -> None:
    result = subprocess.run(
        [*ESCALERA, "explain", "c-1", "--url", fake_worker],
        env=clean_env(COLUMNS="60"), capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    lines = result.stdout.splitlines()
    first = next(i for i, line in enumerate(lines) if line.lstrip().startswith("Reached"))
    explanation = lines[first:]
    assert len(explanation) > 2  # wrapped at 60 columns
    assert all(line.startswith("      ") and len(line) <= 60 for line in explanation), explanation
    assert " ".join(line.strip() for line in explanation) == LONG
