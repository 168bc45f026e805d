"""The published contract is current and usable outside Python: JSON Schemas, examples, AsyncAPI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemas.decoder import decode
from schemas.events import INBOUND_TYPES, outbound_adapter
from schemas.export import OUTBOUND_TYPES, export_json_schemas

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "schemas"
BIN = REPO / "node_modules" / ".bin"
EVENT_TYPES = sorted({*INBOUND_TYPES, *OUTBOUND_TYPES})


def tool(name: str) -> Path:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{path.relative_to(REPO)} is missing: run `npm ci` (the Makefile's test target does this)")
    return path


def ajv(schema: Path, data: Path) -> subprocess.CompletedProcess[str]:
    command = [
        str(tool("ajv")),
        "validate",
        "--spec=draft2020",
        "-c",
        "ajv-formats",
        "-s",
        str(schema),
        "-d",
        str(data),
    ]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=120)


def asyncapi_validate(document: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "asyncapi-analytics.json"  # analytics off: the CLI must not phone home
    config.write_text('{"analyticsEnabled": "false", "infoMessageShown": "true", "userID": "escalera-tests"}')
    env = {**os.environ, "ASYNCAPI_METRICS_CONFIG_PATH": str(config), "SUPPRESS_NO_CONFIG_WARNING": "1"}
    return subprocess.run(
        [str(tool("asyncapi")), "validate", str(document), "--fail-severity", "error"],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=300,
    )  # fmt: skip


def test_committed_json_schemas_are_current(tmp_path: Path) -> None:
    fresh = {path.name: path.read_text() for path in export_json_schemas(tmp_path)}
    committed = {path.name: path.read_text() for path in (SCHEMAS / "json").glob("*.json")}
    stale = sorted(name for name in fresh.keys() | committed.keys() if fresh.get(name) != committed.get(name))
    assert not stale, f"stale JSON Schemas {stale}: run `escalera schemas export schemas/json` and commit"


def test_there_is_one_example_per_event_type() -> None:
    assert sorted(path.stem for path in (SCHEMAS / "examples").glob("*.json")) == EVENT_TYPES


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_each_example_is_valid_for_ajv(event_type: str) -> None:
    result = ajv(SCHEMAS / "json" / f"{event_type}.json", SCHEMAS / "examples" / f"{event_type}.json")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("event_type", sorted(INBOUND_TYPES))
def test_each_inbound_example_fits_the_inbound_union(event_type: str) -> None:
    result = ajv(SCHEMAS / "json" / "inbound.json", SCHEMAS / "examples" / f"{event_type}.json")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amount": "-5"}, "amount"),
        ({"amount": "0.00"}, "amount"),
        ({"amount": 0}, "amount"),
        ({"currency": "ABC"}, "currency"),
        ({"occurred_at": "2026-03-05T10:00:00"}, "occurred_at"),
        ({"schema_version": 2}, "schema_version"),
        ({"order_id": None}, "order_id"),
    ],
)
def test_ajv_rejects_what_the_decoder_rejects(change: dict[str, object], field: str, tmp_path: Path) -> None:
    example = json.loads((SCHEMAS / "examples" / "purchase.completed.json").read_text())
    broken = {key: value for key, value in {**example, **change}.items() if value is not None}
    data = tmp_path / "broken.json"
    data.write_text(json.dumps(broken))
    result = ajv(SCHEMAS / "json" / "purchase.completed.json", data)
    assert result.returncode != 0, f"ajv accepted a payload with a bad {field}"
    assert not isinstance(decode(data.read_bytes(), now=datetime(2026, 6, 1, tzinfo=UTC)), type(example))


def test_examples_decode_into_their_models() -> None:
    now = datetime(2026, 12, 31, tzinfo=UTC)
    for event_type, model in INBOUND_TYPES.items():
        event = decode((SCHEMAS / "examples" / f"{event_type}.json").read_bytes(), now=now)
        assert isinstance(event, model), event
    for event_type, outbound_model in OUTBOUND_TYPES.items():
        decision = outbound_adapter.validate_json((SCHEMAS / "examples" / f"{event_type}.json").read_bytes())
        assert isinstance(decision, outbound_model)


def test_the_asyncapi_document_is_valid(tmp_path: Path) -> None:
    result = asyncapi_validate(SCHEMAS / "asyncapi.yaml", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is valid" in result.stdout


def test_the_asyncapi_document_covers_every_topic_and_event() -> None:
    import yaml

    document = yaml.safe_load((SCHEMAS / "asyncapi.yaml").read_text())
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert addresses == {
        "purchases",
        "feedback",
        "customers",
        "loyalty.perks",
        "loyalty.transitions",
        "loyalty.dlq",
    }
    names = {message["name"] for message in document["components"]["messages"].values()}
    assert names == set(EVENT_TYPES)
    for message in document["components"]["messages"].values():
        assert (SCHEMAS / message["payload"]["schema"]["$ref"]).is_file()


def test_the_asyncapi_document_sends_the_erasure_notice_on_both_decision_topics() -> None:
    import yaml

    document = yaml.safe_load((SCHEMAS / "asyncapi.yaml").read_text())
    by_address = {channel["address"]: name for name, channel in document["channels"].items()}
    for address in ("loyalty.perks", "loyalty.transitions"):
        channel = document["channels"][by_address[address]]
        assert channel["messages"]["customerErased"] == {"$ref": "#/components/messages/customerErased"}
        [operation] = [
            op for op in document["operations"].values() if op["channel"]["$ref"].endswith(by_address[address])
        ]
        assert operation["action"] == "send"
        assert {"$ref": f"#/channels/{by_address[address]}/messages/customerErased"} in operation["messages"]
    carrying = {
        channel["address"] for channel in document["channels"].values() if "customerErased" in channel["messages"]
    }
    assert carrying == {"loyalty.perks", "loyalty.transitions"}
    assert document["components"]["messages"]["customerErased"]["payload"]["schema"]["$ref"] == (
        "./json/customer.erased.json"
    )


def test_the_asyncapi_cli_catches_a_broken_document(tmp_path: Path) -> None:
    shutil.copytree(SCHEMAS / "json", tmp_path / "json")
    broken = (SCHEMAS / "asyncapi.yaml").read_text().replace("action: send", "action: publish", 1)
    (tmp_path / "asyncapi.yaml").write_text(broken)
    result = asyncapi_validate(tmp_path / "asyncapi.yaml", tmp_path)
    assert result.returncode != 0


def test_the_events_page_is_current() -> None:
    from schemas.docs import events_markdown

    page = (REPO / "docs" / "events.md").read_text()
    assert page == events_markdown(SCHEMAS / "examples"), "run `escalera schemas docs docs/events.md` and commit"
    for event_type in EVENT_TYPES:
        assert f"### `{event_type}`" in page
