"""A worker killed with kill -9 and started again at once joins its group without waiting for the killed run's
session to time out (engine/stream/membership.py, issue 18 target 4), here a session of 60 s (Faust's default;
Kafka's is 45 s) so that waiting for it cannot pass for the removal."""

from __future__ import annotations

import time
from pathlib import Path

import orjson

from engine.settings import Settings
from engine.stream.membership import MEMBER
from tests.integration.engine_harness import engine_env, publish_lines, read_all, settings_of, start_worker, wait_until


def purchase(customer_id: str) -> bytes:
    return orjson.dumps({"type": "purchase.completed", "event_id": f"e-{customer_id}", "customer_id": customer_id,
                         "occurred_at": "2026-03-02T10:00:00+00:00", "schema_version": 1,
                         "order_id": f"o-{customer_id}", "amount": "20.00", "currency": "EUR"})  # fmt: skip


def perked(bootstrap: str, settings: Settings, customer_id: str) -> bool:
    perks = read_all(bootstrap, settings.topic_perks, quiet=0.5)
    return any(orjson.loads(value)["customer_id"] == customer_id for _, value in perks if value is not None)


def test_a_worker_restarted_after_kill_9_removes_its_dead_member_and_joins_at_once(
    bootstrap: str, tmp_path: Path
) -> None:
    env = engine_env(bootstrap, 4, ESCALERA_SESSION_TIMEOUT_SECONDS="60")  # a dead member is waited for 60 s
    settings = settings_of(env)
    worker = start_worker(env, tmp_path)
    try:
        publish_lines(env, [purchase("first")])
        wait_until(lambda: perked(bootstrap, settings, "first"), 120, "the first customer's welcome perk")
        recorded = orjson.loads((tmp_path / "worker-1" / "tables" / MEMBER).read_bytes())
        assert recorded["group"] == settings.app_id and recorded["member_id"]
    finally:
        worker.kill()
    restarted = time.monotonic()
    worker = start_worker(env, tmp_path)  # the same data directory
    try:
        publish_lines(env, [purchase("second")])
        wait_until(lambda: perked(bootstrap, settings, "second"), 120, "the second customer's welcome perk")
        waited = time.monotonic() - restarted
        # without the removal the group waits for the killed member's 60 s session before anyone joins
        assert waited < 30, f"{waited:.0f} s to the first perk after the restart: {worker.tail()}"
        log = worker.log.read_text(errors="replace")
        assert f"its member {recorded['member_id']} was removed" in log, worker.tail()
    finally:
        assert worker.stop() == 0, worker.tail()
