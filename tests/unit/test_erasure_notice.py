"""The erasure notice: a `customer.erased` record for each erasure request, with a derived id and nothing else
personal, sent by the worker to both outbound topics and written by the replay to both decision files."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry

from engine.loyalty import DEFAULT_POLICY, DecisionEvent, evolve
from engine.loyalty.outcome import erasure_notice
from engine.offline.outputs import DecisionFiles
from engine.offline.replay import Replay
from engine.stream.metrics import WorkerMetrics
from schemas.construct import flat_json
from schemas.decoder import DecodeLimits
from schemas.events import CustomerErased, ErasureRequested, outbound_adapter, outbound_streams
from tests.unit.loyalty_builders import at, feedback, purchase, register, run
from tests.unit.stream_fakes import Harness

pytestmark = pytest.mark.unit

EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"
FIELDS = {"type", "event_id", "customer_id", "occurred_at", "schema_version", "caused_by"}


def request(customer: str = "c-1", event_id: str = "e-erase", days: float = 30) -> ErasureRequested:
    return ErasureRequested(
        type="customer.erasure_requested", event_id=event_id, customer_id=customer, occurred_at=at(days),
        schema_version=1,
    )  # fmt: skip


def history(customer: str = "c-1") -> list[object]:
    return [
        register(customer, 0, referred_by="friend-9", kind="external"),
        purchase(customer, 1, amount="250", category="coffee"),
        feedback(customer, 2, complaint=True, formal=True, nps=2),
    ]


def test_an_erasure_request_leaves_no_state_and_emits_one_notice_with_nothing_else_personal() -> None:
    state, _ = run(history())  # type: ignore[arg-type]
    assert state is not None
    outcome = evolve(state, request(), DEFAULT_POLICY)
    assert outcome.state is None and not outcome.suppressed and not outcome.referrals
    [notice] = outcome.emitted
    assert isinstance(notice, CustomerErased)
    published = orjson.loads(flat_json(notice))
    assert set(published) == FIELDS
    assert published == {
        "type": "customer.erased",
        "event_id": notice.event_id,
        "customer_id": "c-1",
        "occurred_at": "2025-01-31T10:00:00Z",  # the request's event time
        "schema_version": 1,
        "caused_by": "e-erase",
    }
    # nothing of what the customer's state held: not the referrer, the kind, the amounts, the complaint
    for held in (b"friend-9", b"external", b"250", b"coffee", b"complaint"):
        assert held not in flat_json(notice)


def test_the_notice_id_is_derived_from_the_customer_and_the_request_alone() -> None:
    notice = erasure_notice(request())
    digest = hashlib.sha256(b"c-1|customer|erased|e-erase").hexdigest()
    assert notice.event_id == f"erased-{digest[:24]}"
    assert erasure_notice(request(days=99)).event_id == notice.event_id  # its time is not part of the id
    assert erasure_notice(request(event_id="e-other")).event_id != notice.event_id
    assert erasure_notice(request(customer="c-2")).event_id != notice.event_id


def test_a_redelivered_request_and_a_request_for_an_unknown_customer_give_the_same_notice() -> None:
    state, _ = run(history())  # type: ignore[arg-type]
    first = evolve(state, request(), DEFAULT_POLICY)
    again = evolve(first.state, request(), DEFAULT_POLICY)  # the same request delivered twice: the customer is gone
    unknown = evolve(None, request(), DEFAULT_POLICY)
    assert first.emitted == again.emitted == unknown.emitted == (erasure_notice(request()),)
    assert again.state is None and not again.duplicate


def test_the_notice_built_unvalidated_equals_the_validated_one_and_its_json() -> None:
    notice = erasure_notice(request())
    assert CustomerErased.model_validate(notice.model_dump()) == notice
    assert outbound_adapter.validate_json(flat_json(notice)) == notice
    assert flat_json(notice) == notice.model_dump_json().encode()


def test_the_example_is_the_notice_of_the_example_request() -> None:
    example_request = ErasureRequested.model_validate_json((EXAMPLES / "customer.erasure_requested.json").read_bytes())
    example = json.loads((EXAMPLES / "customer.erased.json").read_text())
    assert example == orjson.loads(flat_json(erasure_notice(example_request)))


def test_a_notice_goes_to_both_outbound_topics_perks_and_transitions_to_their_own() -> None:
    assert outbound_streams("customer.erased") == ("perks", "transitions")
    assert outbound_streams("perk.granted") == ("perks",)
    assert outbound_streams("customer.step_changed") == ("transitions",)
    assert outbound_streams("customer.classification_changed") == ("transitions",)


def replayed(events: list[object]) -> tuple[Replay, list[DecisionEvent]]:
    decisions: list[DecisionEvent] = []
    limits = DecodeLimits(currencies=DEFAULT_POLICY.currencies)
    replay = Replay(DEFAULT_POLICY, limits, datetime(2030, 1, 1, tzinfo=UTC), decisions.append, lambda _: None)
    for event in events:
        replay.feed(event.model_dump_json().encode())  # type: ignore[attr-defined]
    replay.finish()
    return replay, decisions


def test_the_replay_emits_the_notice_counts_it_and_writes_it_to_both_files(tmp_path: Path) -> None:
    events = [*history("c-1"), request("c-1"), request("nobody", event_id="e-erase-2", days=31)]
    replay, decisions = replayed(events)
    notices = [d for d in decisions if d.type == "customer.erased"]
    assert notices == [erasure_notice(request("c-1")), erasure_notice(request("nobody", "e-erase-2", 31))]
    assert "c-1" not in replay.states
    assert replay.counts.erased == 1  # customers the replay held
    assert replay.counts.erasure_notices == 2  # one per request
    assert "customer.erased" not in replay.counts.transitions
    with DecisionFiles(tmp_path) as files:
        for decision in decisions:
            files.decision(decision)
    perks = [orjson.loads(line) for line in (tmp_path / "perks.jsonl").read_bytes().splitlines()]
    transitions = [orjson.loads(line) for line in (tmp_path / "transitions.jsonl").read_bytes().splitlines()]
    expected = [orjson.loads(flat_json(notice)) for notice in notices]
    assert [p for p in perks if p["type"] == "customer.erased"] == expected
    assert [t for t in transitions if t["type"] == "customer.erased"] == expected
    assert {p["type"] for p in perks} == {"perk.granted", "customer.erased"}


def test_the_metrics_count_the_notice_without_a_label() -> None:
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry)
    assert registry.get_sample_value("escalera_erasure_notices_total") == 0
    metrics.decided(evolve(None, request(), DEFAULT_POLICY))
    assert registry.get_sample_value("escalera_erasure_notices_total") == 1
    assert registry.get_sample_value("escalera_transitions_total", {"dimension": "step"}) is None


def test_the_worker_sends_the_replays_notice_to_both_topics_keyed_by_the_customer() -> None:
    h = Harness()
    events = [register("c-1", 0), purchase("c-1", 1), request("c-1", days=2), request("nobody", "e-erase-2", 3)]
    h.run(*(h.event("customers" if e.type.startswith("customer.") else "purchases", e) for e in events))
    expected = [flat_json(d) for d in replayed(events)[1] if d.type == "customer.erased"]
    for topic in (h.channels.perks, h.channels.transitions):
        notices = [sent for sent in topic.sent if b'"customer.erased"' in sent.value]
        assert [sent.value for sent in notices] == expected
        assert [sent.key for sent in notices] == [b"c-1", b"nobody"]
    assert h.table.state("c-1") is None
    assert h.metric("escalera_erasure_notices_total") == 2
