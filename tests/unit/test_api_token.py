"""ESCALERA_API_TOKEN (issue 20): with it set, `/customers/…` and `/audiences` want `Authorization: Bearer <token>`
(401 with a JSON error and a `WWW-Authenticate: Bearer` challenge otherwise), `/metrics`, `/health` and `/ready` stay
open, workers send it to each other, `escalera explain` sends it; and it is never shown: not in logs, repr or
errors."""

from __future__ import annotations

import http.server
import logging
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.errors import SettingsError
from engine.settings import load_settings
from engine.stream import web as pages
from tests.unit.test_audience_web import cluster, shop

pytestmark = pytest.mark.unit

TOKEN = "s3cr3t-t0ken-0123456789abcdef"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def test_the_query_api_refuses_a_request_without_the_token_or_with_a_wrong_one() -> None:
    _, (worker,) = cluster([[0, 1, 2, 3]], token=TOKEN)
    someone = shop()[0].customer_id
    for path in (f"/customers/{someone}", "/audiences?step=buyer"):
        for headers, challenge in (
            ({}, 'Bearer realm="escalera"'),
            ({"Authorization": "Bearer wrong-token-0123456789"}, 'Bearer realm="escalera", error="invalid_token"'),
            ({"Authorization": f"Bearer {TOKEN}x"}, 'Bearer realm="escalera", error="invalid_token"'),
            ({"Authorization": f"Basic {TOKEN}"}, 'Bearer realm="escalera", error="invalid_token"'),
            ({"Authorization": TOKEN}, 'Bearer realm="escalera", error="invalid_token"'),
        ):
            answer = worker.ask(path, headers)
            assert answer.status == 401, (path, headers)
            assert answer.headers["WWW-Authenticate"] == challenge
            assert "API token" in answer.json()["error"] and TOKEN not in answer.body.decode()
        assert worker.ask(path, BEARER).status == 200, path
        assert worker.ask(path, {"authorization": f"bearer  {TOKEN} "}).status == 200  # (header and scheme: any case)


def test_the_operators_pages_stay_open() -> None:
    _, (worker,) = cluster([[0, 1, 2, 3]], token=TOKEN)
    for path in ("/metrics", "/health", "/ready"):
        answer = worker.ask(path)
        assert answer.status == 200 and "WWW-Authenticate" not in answer.headers, path


def test_without_a_token_set_the_query_api_is_open() -> None:
    _, (worker,) = cluster([[0, 1, 2, 3]])
    assert worker.ask(f"/customers/{shop()[0].customer_id}").status == 200
    assert worker.ask("/audiences").status == 200


def test_workers_send_the_token_when_they_forward_or_fan_out(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    network, workers = cluster([[0, 2], [1, 3]], token=TOKEN)
    elsewhere = next(s.customer_id for s in shop() if workers[1].harness.partition_of(s.customer_id) in (1, 3))
    answer = workers[0].ask(f"/customers/{elsewhere}", BEARER)  # forwarded to its owner, which wants the token too
    assert answer.status == 200 and answer.json()["answered_by"] == str(workers[1].url)
    answer = workers[0].ask("/audiences?limit=1000", BEARER)
    assert answer.status == 200 and len(answer.json()["customers"]) == len(shop())
    assert len(network.asked) == 2 and all(h["Authorization"] == f"Bearer {TOKEN}" for _, h in network.asked)
    # a worker with another token refuses what the first forwards: said, not an empty page
    other, others = cluster([[0, 2], [1, 3]], token=TOKEN)
    others[1].app.http_client = other
    pages.serve_pages(others[1].app, others[1].harness.processor, pages.CollectorRegistry(),  # type: ignore[arg-type]
                      pages.SecretStr("another-token-0123456789"))  # fmt: skip
    answer = others[0].ask("/audiences", BEARER)
    assert answer.status == 502 and "answered 401" in answer.json()["error"]
    assert TOKEN not in caplog.text


def test_the_token_is_checked_at_start_up_and_never_shown() -> None:
    settings = load_settings({"ESCALERA_API_TOKEN": TOKEN})
    assert settings.api_token is not None and settings.api_token.get_secret_value() == TOKEN
    assert TOKEN not in repr(settings) and TOKEN not in str(settings) and TOKEN not in str(settings.model_dump())
    assert load_settings({}).api_token is None
    for bad in ("short-token", "has a space inside it ok", "tab\tinside-0123456789", "é" * 20):
        with pytest.raises(SettingsError) as caught:
            load_settings({"ESCALERA_API_TOKEN": bad})
        assert "ESCALERA_API_TOKEN: give at least 16 printable ASCII characters" in str(caught.value)
        assert bad not in str(caught.value)


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        self.seen.append(self.headers.get("Authorization"))
        body = b'{"error": "this query needs the API token"}'
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[str | None]]]:
    _Recorder.seen = []
    server = http.server.HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Recorder.seen
    server.shutdown()
    server.server_close()


def test_explain_sends_the_token_when_set_and_says_401_in_one_line(recorder: tuple[str, list[str | None]]) -> None:
    url, seen = recorder
    asked = CliRunner().invoke(app, ["explain", "c-1", "--url", url], env={"ESCALERA_API_TOKEN": TOKEN})
    plain = CliRunner().invoke(app, ["explain", "c-1", "--url", url], env={})
    assert seen == [f"Bearer {TOKEN}", None]
    assert "401" in str(asked.exception) and TOKEN not in str(asked.exception) + asked.output
    assert "401" in str(plain.exception)
