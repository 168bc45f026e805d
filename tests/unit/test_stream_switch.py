"""A policy switch on a worker (issue 20, item 2; engine/stream/switch.py), over the fakes of
tests/unit/stream_fakes.py: a table left by workers of the default policy, received by a worker of a candidate that
makes customers habitual at 3 purchases. Every customer is re-evaluated before any new event, the decisions are
`escalera whatif`'s prediction (`predict_switch`), the rate limit paces the perks without changing them, and the
version is kept only after the switched states."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

import engine.stream.switch
from engine.broker.table_keys import policy_key
from engine.loyalty import DEFAULT_POLICY, Policy
from engine.loyalty.switch import switch_in_place
from engine.offline.replay import Replay
from engine.offline.simulation import SimulationSpec, simulate
from engine.offline.whatif import predict_switch
from engine.stream import records
from schemas.construct import flat_json
from schemas.decoder import DecodeLimits
from tests.unit.loyalty_builders import purchase
from tests.unit.stream_fakes import Harness

pytestmark = pytest.mark.unit

PARTITIONS = 2
CANDIDATE = Policy.model_validate({"ladder": {"habitual_min_purchases": 3}})
PURCHASES = "purchases"


def history() -> Replay:
    """A simulated shop replayed under the default policy, with the workers' partition count."""
    replay = Replay(DEFAULT_POLICY, DecodeLimits(currencies=DEFAULT_POLICY.currencies), datetime.now(UTC),
                    lambda _: None, lambda _: None, PARTITIONS)  # fmt: skip
    for line in simulate(SimulationSpec(150, 240, seed=5)):
        replay.feed(line)
    replay.finish()
    return replay


@pytest.fixture(scope="module")
def replay() -> Replay:
    return history()


def received(replay: Replay, policy: Policy = CANDIDATE, kept: bytes | None = DEFAULT_POLICY.version.encode(),
             **settings: Any) -> Harness:  # fmt: skip
    """A worker of `policy` receiving the partitions of a table the replay's states fill, whose version is `kept`."""
    h = Harness(partitions=PARTITIONS, policy=policy, **settings)
    for partition in range(PARTITIONS):
        h.table.parts[partition].pop(policy_key(partition))
        if kept is not None:
            h.table.parts[partition][policy_key(partition)] = kept
    for state in replay.states.values():
        h.table.put(state.copy())
    return h


def ticks(h: Harness) -> None:
    h.run(*(h.internal(records.Tick(), partition=p) for p in range(PARTITIONS)))


def predicted(replay: Replay, policy: Policy = CANDIDATE) -> list[dict[str, Any]]:
    return [orjson.loads(flat_json(d)) for d in predict_switch(replay, policy)]


def test_a_worker_of_a_new_policy_re_evaluates_every_customer_at_once_as_whatif_predicts(replay: Replay) -> None:
    h = received(replay, switch_perks_per_second=0)
    ticks(h)
    expected = predicted(replay)
    assert expected, "the candidate changes nobody: the test would prove nothing"
    assert any(d["type"] == "perk.granted" for d in expected)
    assert sorted(h.decisions(), key=_key) == sorted(expected, key=_key)  # (partitions switched one after another)
    assert {d["caused_by"] for d in h.decisions()} == {f"policy:{CANDIDATE.version}"}
    switched = {d["customer_id"] for d in expected}
    for customer_id in switched:  # their states as the prediction leaves them
        state = replay.states[customer_id].copy()
        switch_in_place(state, CANDIDATE)
        assert h.table.state(customer_id) == state
    assert h.metric("escalera_policy_switch_customers_total") == len(replay.states)
    # the version is kept in the batch after the switched states, never before them
    writes = [w.key for w in h.table.writes]
    assert policy_key(0) not in writes
    ticks(h)
    writes = [w.key for w in h.table.writes]
    for partition in range(PARTITIONS):
        assert h.table.parts[partition][policy_key(partition)] == CANDIDATE.version.encode()
        last_state = max(i for i, w in enumerate(h.table.writes) if w.event.message.partition == partition
                         and not w.key.startswith(b"\x00"))  # fmt: skip
        assert writes.index(policy_key(partition)) > last_state
    before = len(h.decisions())
    restarted = Harness(partitions=PARTITIONS, policy=CANDIDATE)
    restarted.table.parts = h.table.parts
    ticks(restarted)
    assert len(h.decisions()) == before and restarted.decisions() == []  # switched once: not again


def test_new_events_wait_for_the_switch_and_the_rate_limit_paces_its_perks(
    replay: Replay, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [100.0]
    monkeypatch.setattr(engine.stream.switch.time, "monotonic", lambda: clock[0])
    expected = predicted(replay)
    perks = sum(d["type"] == "perk.granted" for d in expected)
    rate = max(1, perks // 4)  # about four seconds' worth
    h = received(replay, switch_perks_per_second=rate)
    customer = sorted(replay.states)[0]
    later = purchase(customer, 600)  # after the history (it ends in June 2026): applied after the switch
    h.run(h.event(PURCHASES, later), *(h.internal(records.Tick(), partition=p) for p in range(PARTITIONS)))
    seconds = 0
    while h.processor.switch.under_way:
        granted = sum(d["type"] == "perk.granted" for d in h.decisions())
        assert granted <= rate * (seconds + 1) + 3  # (a customer's perks are never split: up to 3 at once)
        assert not any(d["caused_by"] == later.event_id for d in h.decisions())  # the event waits
        clock[0] += 1
        seconds += 1
        ticks(h)
    assert seconds >= 3
    ticks(h)
    first, then = h.decisions()[: len(expected)], h.decisions()[len(expected) :]
    assert sorted(first, key=_key) == sorted(expected, key=_key)  # the switch first, paced, not changed
    assert any(d["caused_by"] == later.event_id for d in then)  # then the event (after the midnights before it)
    assert not any(d["caused_by"].startswith("policy:") for d in then)
    state = h.table.state(customer)
    assert state is not None and later.event_id in state.seen_ids


def test_a_table_with_no_version_kept_is_taken_as_evaluated_under_the_workers_policy(replay: Replay) -> None:
    h = received(replay, kept=None)
    ticks(h)
    assert h.decisions() == []
    assert h.metric("escalera_policy_switch_customers_total") == 0
    for partition in range(PARTITIONS):
        assert h.table.parts[partition][policy_key(partition)] == CANDIDATE.version.encode()


def test_the_same_policy_switches_nobody(replay: Replay) -> None:
    h = received(replay, policy=DEFAULT_POLICY)
    ticks(h)
    assert h.decisions() == [] and h.metric("escalera_policy_switch_customers_total") == 0


def _key(decision: dict[str, Any]) -> tuple[str, str]:
    return decision["customer_id"], decision["event_id"]
