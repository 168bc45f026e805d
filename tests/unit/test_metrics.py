"""The worker's metrics count decisions by bounded labels, on a registry of their own."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from types import SimpleNamespace

import orjson
from prometheus_client import CollectorRegistry

from engine.broker.publish import route
from engine.loyalty import evolve_in_place, load_policy
from engine.settings import load_settings
from engine.stream.metrics import CustomersCollector, WorkerMetrics
from schemas.decoder import DecodeLimits, Rejection, decode
from schemas.events import INBOUND_TYPES, StepChanged

POLICY = load_policy(None)
FIRST_PURCHASE = (
    b'{"type":"purchase.completed","event_id":"e-1","customer_id":"c-1","occurred_at":"2026-01-01T00:00:00Z",'
    b'"schema_version":1,"order_id":"o-1","amount":"20.00","currency":"EUR"}'
)


def test_a_first_purchase_counts_its_step_change_classifications_and_welcome_offer() -> None:
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry)
    event = decode(FIRST_PURCHASE, now=datetime.now(UTC), limits=DecodeLimits(currencies=POLICY.currencies))
    assert not isinstance(event, Rejection)
    outcome = evolve_in_place(None, event, POLICY)
    metrics.decided(outcome)
    value = registry.get_sample_value
    step = next(d for d in outcome.emitted if isinstance(d, StepChanged))
    assert (
        value("escalera_transitions_total", {"dimension": "step", "from_value": "none", "to_value": step.to_step}) == 1
    )  # type: ignore[union-attr]
    assert value("escalera_perks_total", {"perk": "welcome_offer", "outcome": "granted"}) == 1
    changes = sum(1 for d in outcome.emitted if d.type == "customer.classification_changed")
    counted = sum(
        s.value
        for family in registry.collect()
        if family.name == "escalera_transitions"
        for s in family.samples
        if s.name == "escalera_transitions_total" and s.labels["dimension"] != "step"
    )
    assert counted == changes == 2
    assert (
        CollectorRegistry().get_sample_value("escalera_perks_total", {"perk": "welcome_offer", "outcome": "granted"})
        is None
    )


def test_a_rejection_is_consumed_once_and_dead_lettered_by_reason() -> None:
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry)
    metrics.rejected("purchases", "invalid_json")
    metrics.rejected("purchases", "invalid_json")
    assert registry.get_sample_value("escalera_dead_letters_total", {"reason": "invalid_json"}) == 2
    labels = {"topic": "purchases", "type": "none", "outcome": "rejected"}
    assert registry.get_sample_value("escalera_events_consumed_total", labels) == 2


def test_customer_gauges_sum_the_owned_partitions_at_each_scrape() -> None:
    registry = CollectorRegistry()

    def partition(steps: dict[str, int], satisfaction: dict[str, int], formal: int) -> SimpleNamespace:
        return SimpleNamespace(steps=Counter(steps), relationships=Counter({"unknown": sum(steps.values())}),
                               satisfaction=Counter(satisfaction), formal_complaints=formal)  # fmt: skip

    owned = [partition({"buyer": 2, "possible": 1}, {"satisfied": 2, "dissatisfied": 1}, 1)]
    registry.register(CustomersCollector(lambda: owned, POLICY.operations))
    owned.append(partition({"buyer": 1, "habitual": 0}, {"delighted": 1}, 2))
    assert registry.get_sample_value("escalera_customers", {"step": "buyer"}) == 3
    assert registry.get_sample_value("escalera_customers", {"step": "habitual"}) is None  # empty steps are left out
    assert registry.get_sample_value("escalera_customers_by_relationship", {"relationship": "unknown"}) == 4
    # three formal complaints, each standing for 1 / (0.30 x 0.02) unhappy customers; 3 x 4.5 told good, 1 x 9.5 bad
    assert registry.get_sample_value("escalera_formal_complaints") == 3
    assert abs(registry.get_sample_value("escalera_estimated_unhappy_customers") - 500) < 1e-6  # type: ignore[operator]
    assert registry.get_sample_value("escalera_expected_net_word_of_mouth") == 3 * 4.5 - 9.5
    owned.clear()  # partitions given away: nothing counted here any more
    assert registry.get_sample_value("escalera_customers", {"step": "buyer"}) is None


def test_series_with_known_labels_start_at_zero_so_rates_see_their_first_increment() -> None:
    registry = CollectorRegistry()
    WorkerMetrics(registry, ("purchases", "feedback", "customers"))
    value = registry.get_sample_value
    assert value("escalera_dead_letters_total", {"reason": "unknown_currency"}) == 0
    assert value("escalera_perks_total", {"perk": "win_back_offer", "outcome": "suppressed_cooldown"}) == 0
    labels = {"topic": "feedback", "type": "feedback.received", "outcome": "duplicate"}
    assert value("escalera_events_consumed_total", labels) == 0
    assert value("escalera_events_consumed_total", {"topic": "customers", "type": "none", "outcome": "rejected"}) == 0


def test_only_series_that_can_occur_start_at_zero() -> None:
    # /metrics listed every topic x type, e.g. a customer.registered applied on the purchases topic, at 0 forever
    topics = {"PURCHASES": "shop.orders", "FEEDBACK": "shop.voice", "CUSTOMERS": "shop.people"}
    settings = load_settings({f"ESCALERA_TOPIC_{role}": name for role, name in topics.items()})
    registry = CollectorRegistry()
    WorkerMetrics(registry, settings.inbound_topics)
    zero = {
        (sample.labels["topic"], sample.labels["type"], sample.labels["outcome"])
        for family in registry.collect()
        if family.name == "escalera_events_consumed"
        for sample in family.samples
        if sample.name == "escalera_events_consumed_total"
    }
    expected = {
        (route(orjson.dumps({"type": event_type}), settings).topic, event_type, outcome)
        for event_type in INBOUND_TYPES
        for outcome in ("applied", "duplicate")
    } | {(topic, "none", "rejected") for topic in settings.inbound_topics}  # a bad record can come on any topic
    assert zero == expected
    assert ("shop.orders", "customer.registered", "applied") not in zero
    assert ("shop.people", "customer.erasure_requested", "applied") in zero
