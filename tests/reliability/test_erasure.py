"""Erasure leaves no trace: the customer leaves the table at once, their earlier states and then their tombstone
leave the changelog within ESCALERA_ERASURE_MAX_DELAY_SECONDS, the worker's local table files lose them within
seconds, the worker's /metrics, /health and log never held their id, and a `customer.erased` notice (the replay's)
tells the consumers of both outbound topics to forget them."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from engine.broker.table_keys import is_partition_key
from engine.loyalty.state_codec import unpack
from tests.integration.engine_harness import (
    engine_env,
    publish_lines,
    read_all,
    replay_of,
    settings_of,
    start_worker,
    table_states,
    wait_until,
)

T0 = datetime(2026, 3, 1, 10, tzinfo=UTC)
ERASED = "erase-me-7f3a9c"  # distinctive: searched for byte by byte
OTHER = "stays-1"


def line(event_type: str, event_id: str, customer: str, day: int, **fields: Any) -> bytes:
    moment = (T0 + timedelta(days=day)).isoformat().replace("+00:00", "Z")
    event = {"type": event_type, "event_id": event_id, "customer_id": customer, "occurred_at": moment}
    return orjson.dumps({**event, "schema_version": 1, **fields})


def readable(key: bytes | None, value: bytes) -> bytes:
    """A table value as text to search: a customer's state unpacked, a partition's own key's value (its budget ledger,
    its policy version: engine/broker/table_keys.py) as it is."""
    return value if key is not None and is_partition_key(key) else unpack(value)


def files_naming(directory: Path, text: str) -> list[str]:
    """The files under `directory` whose bytes contain `text`, and the local tables (RocksDB, opened read-only) with
    a state that names it: states are stored compressed, so a customer named inside another's state is not in the
    files' bytes (the keys are)."""
    import rocksdict

    needle = text.encode()
    found = [str(path.relative_to(directory)) for path in directory.rglob("*") if path.is_file()
             and needle in path.read_bytes()]  # fmt: skip
    for table in directory.rglob("*.db"):
        db = rocksdict.Rdict(
            str(table), options=rocksdict.Options(raw_mode=True), access_type=rocksdict.AccessType.read_only()
        )
        try:
            if any(needle in readable(key, value) for key, value in db.items() if not key.startswith(b"__faust")):
                found.append(str(table.relative_to(directory)))
        finally:
            db.close()
    return found


def test_an_erased_customer_leaves_no_trace(bootstrap: str, tmp_path: Path, report: Callable[..., None]) -> None:
    env = engine_env(bootstrap, 1, ESCALERA_ERASURE_MAX_DELAY_SECONDS="2")
    settings = settings_of(env)
    changelog = settings.changelog_topic
    history = [
        line("customer.registered", "e-1", ERASED, 0, kind="final", referred_by=OTHER,
             traits={"has_need": True, "can_afford": True, "can_decide": True}),
        line("purchase.completed", "e-2", ERASED, 1, order_id="o-2", amount="59.90", currency="EUR"),
        line("feedback.received", "e-3", ERASED, 2, channel="survey", nps=3, complaint=True, formal=True),
        line("customer.registered", "e-4", OTHER, 0, kind="final"),
    ]  # fmt: skip
    request = line("customer.erasure_requested", "e-5", ERASED, 3)
    publish_lines(env, history)
    worker = start_worker(env, tmp_path)
    try:
        wait_until(lambda: ERASED in table_states(bootstrap, env), 120, "the customer's state is in the table")
        data = tmp_path / "worker-1"
        assert files_naming(data, ERASED)  # the search below can find them: their state is on disk now
        publish_lines(env, [request])
        erased = time.monotonic()
        wait_until(lambda: ERASED not in table_states(bootstrap, env), 60, "the customer gone from the table")
        day = 3

        def changelog_clean() -> bool:
            # another customer's events keep the changelog moving: Kafka rolls a compacted log's segment (and
            # its cleaner compacts it) only as records arrive
            nonlocal day
            day += 1
            publish_lines(env, [line("customer.interest_shown", f"e-{10 + day}", OTHER, day, signal="visit")])
            records = read_all(bootstrap, changelog, quiet=1.0)
            # (a state is stored compressed: searched in its JSON)
            return not [
                r for r in records if ERASED.encode() in (r[0] or b"") + (readable(r[0], r[1]) if r[1] else b"")
            ]

        clean_after: dict[str, float] = {}  # where the customer is gone, and how long after the erasure

        def everywhere_clean() -> bool:
            if "local files" not in clean_after and not files_naming(data, ERASED):
                clean_after["local files"] = time.monotonic() - erased
            if "changelog" not in clean_after and changelog_clean():
                clean_after["changelog"] = time.monotonic() - erased
            return len(clean_after) == 2

        # the cleaner looks for work every second on the test broker; 2 s of delay, then a pass, then the
        # tombstone's own 2 s and another pass; the worker compacts its local files every 10 s
        wait_until(everywhere_clean, 240, f"the customer gone from the changelog (tombstone included) and from "
                   f"every local file of {data}", 1)  # fmt: skip
        for path in ("/metrics", "/health", "/ready"):
            status, body = worker.get(path)
            assert status == 200 and ERASED.encode() not in body and OTHER.encode() not in body, path
        assert worker.get(f"/customers/{ERASED}")[0] == 404
        # consumers are told: one customer.erased notice, the replay's, keyed by the id, on each outbound topic
        [notice] = replay_of([*history, request]).erasure_notices
        assert notice["customer_id"] == ERASED and notice["caused_by"] == "e-5"
        for topic in (settings.topic_perks, settings.topic_transitions):
            found = [(key, orjson.loads(value)) for key, value in read_all(bootstrap, topic)
                     if value is not None and orjson.loads(value)["type"] == "customer.erased"]  # fmt: skip
            assert found == [(ERASED.encode(), notice)], topic
    finally:
        assert worker.stop() == 0, worker.tail()
    assert ERASED not in worker.log.read_text(errors="replace")  # the log never named them
    report(changelog_clean_after_seconds=round(clean_after["changelog"], 1),
           local_files_clean_after_seconds=round(clean_after["local files"], 1), max_delay_seconds=2)  # fmt: skip
