"""The worker's Prometheus metrics, on a registry handed in (each worker and each test its own).

Labels are few and bounded (topic, event type, outcome, dimension and its values, perk, reason): never a
customer id.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol, get_args

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from engine.loyalty import Outcome, Published
from engine.loyalty.perks import SuppressionReason
from engine.loyalty.policy import WordOfMouth
from engine.loyalty.word_of_mouth import HAPPY, UNHAPPY, net_word_of_mouth, unhappy_per_formal_complaint
from schemas.events import (
    INBOUND_TYPES,
    CustomerErased,
    PerkGranted,
    PerkRevoked,
    PerkType,
    RejectionReason,
    StepChanged,
)

PROCESSING_BUCKETS = (0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0, 86_400.0, 2_592_000.0)
# Granted, held back for a reason (the cooldown, the cap, a perk rule's window, conditions or budget), or revoked (what
# earned it undone within the policy's hold: engine/loyalty/revocation.py).
PERK_OUTCOMES = ("granted", *(f"suppressed_{reason}" for reason in get_args(SuppressionReason)), "revoked")
NONE = "none"  # a label value for "nothing before" (first placement) and unknown event types


class WorkerMetrics:
    """What a worker counts and times while it applies events."""

    def __init__(self, registry: CollectorRegistry, inbound_topics: tuple[str, str, str] | None = None) -> None:
        self.events = Counter(
            "escalera_events_consumed",
            "Inbound records consumed, by topic, event type and outcome (applied, duplicate, rejected, rerouted).",
            ["topic", "type", "outcome"],
            registry=registry,
        )
        self.processing = Histogram(
            "escalera_event_processing_seconds",
            "Time to apply one event to its customer's state and queue what it decided.",
            buckets=PROCESSING_BUCKETS,
            registry=registry,
        )
        self.lag = Histogram(
            "escalera_event_lag_seconds",
            "From an event's occurred_at to the moment it was applied (wall clock).",
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self.transitions = Counter(
            "escalera_transitions",
            "Customers' changes of ladder step or classification, by dimension, from and to.",
            ["dimension", "from_value", "to_value"],
            registry=registry,
        )
        self.perks = Counter(
            "escalera_perks",
            "Perks decided, by perk and outcome (granted; suppressed_<reason>: by the cooldown, the cap, or a perk "
            "rule's window, conditions or budget; revoked: what earned it undone within the policy's refund hold).",
            ["perk", "outcome"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "escalera_dead_letters",
            "Records sent to the dead-letter topic, by reason.",
            ["reason"],
            registry=registry,
        )
        self.erasure_notices = Counter(
            "escalera_erasure_notices",
            "customer.erased notices published, one per erasure request (each to the perks and the transitions "
            "topic). No label: the customer's id is never one.",
            registry=registry,
        )
        self.referral_credits = Counter(
            "escalera_referral_credits",
            "Referral credits sent to a referrer's partition (a referred customer's first purchase).",
            registry=registry,
        )
        self.referral_reversals = Counter(
            "escalera_referral_reversals",
            "Referral conversions undone, sent to the referrer's partition (the referred customer's first purchase "
            "fully refunded within the policy's hold).",
            registry=registry,
        )
        self.switch_customers = Counter(
            "escalera_policy_switch_customers",
            "Customers re-evaluated under a new policy when the workers were restarted with it "
            "(engine/stream/switch.py).",
            registry=registry,
        )
        self.time_sweeps = Counter(
            "escalera_time_sweeps",
            "Customers to whom the passage of time was applied at a day boundary they were due at.",
            registry=registry,
        )
        self.late = Counter(
            "escalera_late_events",
            "Inbound events applied after a later event or a midnight of their partition had been (beyond the "
            "arrival grace): applied all the same, and their decisions say they arrived late.",
            ["topic"],
            registry=registry,
        )
        self.lateness = Histogram(
            "escalera_event_lateness_seconds",
            "How far behind its partition's stream time a late event was, in event time.",
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self.read_again = Counter(
            "escalera_records_read_again",
            "Records put back because Faust skipped earlier ones of their partition: read again in order "
            "(engine/stream/faust_fixes/continuity.py).",
            registry=registry,
        )

        self._start_at_zero(inbound_topics)

    def _start_at_zero(self, inbound_topics: tuple[str, str, str] | None) -> None:
        """Every series whose labels are known in advance is exposed at 0 from the start: a series that appears
        only at its first increment hides that increment from Prometheus' rate() and increase(). Only series that
        can occur: each inbound topic with the event types it carries (a rejection can come on any of them)."""
        carried = {} if inbound_topics is None else carried_types(inbound_topics)
        for topic, event_types in carried.items():
            for event_type in event_types:
                for outcome in ("applied", "duplicate"):
                    self.events.labels(topic, event_type, outcome)
            self.events.labels(topic, NONE, "rejected")
            self.late.labels(topic)
        for reason in get_args(RejectionReason):
            self.dead_letters.labels(reason)
        for perk in get_args(PerkType):
            for outcome in PERK_OUTCOMES:
                self.perks.labels(perk, outcome)

    def consumed(self, topic: str, event_type: str | None, outcome: str) -> None:
        """One inbound record and what became of it."""
        self.events.labels(topic, event_type or NONE, outcome).inc()

    def rejected(self, topic: str, reason: str) -> None:
        """A record that could not be decoded: consumed, and sent to the dead-letter topic."""
        self.consumed(topic, None, "rejected")
        self.dead_letters.labels(reason).inc()

    def decided(self, outcome: Outcome) -> None:
        """The transitions and perks of one outcome (of an event or of the passage of time)."""
        self._decisions(outcome.published())
        for held in outcome.suppressed:
            self.perks.labels(held.perk, f"suppressed_{held.reason}").inc()

    def _decisions(self, decisions: Iterable[Published]) -> None:
        for decision in decisions:
            if isinstance(decision, PerkGranted):
                self.perks.labels(decision.perk, "granted").inc()
            elif isinstance(decision, PerkRevoked):
                self.perks.labels(decision.perk, "revoked").inc()
            elif isinstance(decision, StepChanged):
                self.transitions.labels("step", decision.from_step or NONE, decision.to_step).inc()
            elif isinstance(decision, CustomerErased):
                self.erasure_notices.inc()
            else:
                self.transitions.labels(decision.dimension, decision.from_value or NONE, decision.to_value).inc()


def carried_types(inbound_topics: tuple[str, str, str]) -> dict[str, list[str]]:
    """Each inbound topic and the event types it carries, from `Settings.inbound_topics` (the purchases, feedback
    and customers topics): purchase.* on the first, feedback.* on the second, the rest on the third, as
    `engine.broker.publish.route` sends them and schemas/asyncapi.yaml declares them."""
    purchases, feedback, customers = inbound_topics
    topic_of = {"purchase": purchases, "feedback": feedback}
    carried: dict[str, list[str]] = {topic: [] for topic in inbound_topics}
    for event_type in INBOUND_TYPES:
        carried[topic_of.get(event_type.partition(".")[0], customers)].append(event_type)
    return carried


class PartitionCounts(Protocol):
    """What a worker counts of one partition it owns."""

    steps: collections.Counter[str]
    relationships: collections.Counter[str]
    satisfaction: collections.Counter[str]
    formal_complaints: int


def _by_label(name: str, documentation: str, label: str, counts: collections.Counter[str]) -> GaugeMetricFamily:
    """A gauge with one sample per non-zero count."""
    gauge = GaugeMetricFamily(name, documentation, labels=[label])
    for value, n in sorted(counts.items()):
        if n:
            gauge.add_metric([value], n)
    return gauge


class CustomersCollector(Collector):
    """Customers per ladder step and per relationship quadrant on the partitions this worker owns now, read at
    each scrape: summed over the workers of a group, they count every customer once."""

    def __init__(self, partitions: Callable[[], Iterable[PartitionCounts]], word_of_mouth: WordOfMouth) -> None:
        self.partitions, self.word_of_mouth = partitions, word_of_mouth

    def collect(self) -> Iterator[GaugeMetricFamily]:
        steps: collections.Counter[str] = collections.Counter()
        relationships: collections.Counter[str] = collections.Counter()
        satisfaction: collections.Counter[str] = collections.Counter()
        formal = 0
        for counts in list(self.partitions()):
            steps.update(counts.steps)
            relationships.update(counts.relationships)
            satisfaction.update(counts.satisfaction)
            formal += counts.formal_complaints
        yield _by_label("escalera_customers", "Customers on this worker's partitions, by ladder step.", "step", steps)
        yield _by_label("escalera_customers_by_relationship",
                        "Customers on this worker's partitions, by relationship quadrant.", "relationship",
                        relationships)  # fmt: skip
        ops = self.word_of_mouth
        yield GaugeMetricFamily("escalera_formal_complaints", "Formal complaints made by this worker's customers.",
                                value=formal)  # fmt: skip
        yield GaugeMetricFamily(
            "escalera_estimated_unhappy_customers",
            "The complaint iceberg: formal complaints times the unhappy customers each stands for (domain brief §4).",
            value=float(formal * unhappy_per_formal_complaint(ops)),
        )
        happy = sum(satisfaction[name] for name in HAPPY)
        unhappy = sum(satisfaction[name] for name in UNHAPPY)
        yield GaugeMetricFamily(
            "escalera_expected_net_word_of_mouth",
            "People expected to hear good minus bad of the shop from this worker's customers (domain brief §4).",
            value=float(net_word_of_mouth(happy, unhappy, ops)),
        )


class ConsumerLagCollector(Collector):
    """Records not yet read on each inbound topic partition this worker owns: the broker's end offset (as last
    fetched) minus the next offset to read."""

    def __init__(self, positions: Callable[[], Iterable[tuple[str, int, int]]]) -> None:
        self.positions = positions  # (topic, partition, lag) for each owned inbound topic partition

    def collect(self) -> Iterator[GaugeMetricFamily]:
        lag = GaugeMetricFamily(
            "escalera_consumer_lag_records",
            "Records not yet read, by inbound topic and partition (from the last fetched end offset).",
            labels=["topic", "partition"],
        )
        for topic, partition, behind in sorted(self.positions()):
            lag.add_metric([topic, str(partition)], behind)
        yield lag


class RecoveryProgress(Protocol):
    """What Faust's table recovery tells of itself (faust.tables.recovery.Recovery)."""

    in_recovery: bool


class RestoreCollector(Collector):
    """The worker's table restore from its changelog: under way or not, and how long the latest one took.

    Faust restores after every rebalance; it keeps the start and end times of the latest restore in attributes of
    its own (`_recovery_started_at`, `_recovery_ended_at`, monotonic seconds), read here at each scrape."""

    def __init__(self, recovery: Callable[[], RecoveryProgress | None]) -> None:
        self.recovery = recovery

    def collect(self) -> Iterator[GaugeMetricFamily]:
        recovery = self.recovery()
        restoring = bool(recovery is not None and recovery.in_recovery)
        yield GaugeMetricFamily(
            "escalera_table_restore_in_progress",
            "1 while the worker restores its customer table from the changelog (after a start or a rebalance).",
            value=int(restoring),
        )
        started = getattr(recovery, "_recovery_started_at", None)
        ended = getattr(recovery, "_recovery_ended_at", None)
        took = GaugeMetricFamily(
            "escalera_table_restore_seconds",
            "How long the worker's latest completed table restore took.",
        )
        if not restoring and started is not None and ended is not None and ended >= started:
            took.add_metric([], ended - started)
        yield took
