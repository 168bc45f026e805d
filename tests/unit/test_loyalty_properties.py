"""Properties of the core that must hold for any history (hypothesis)."""

from __future__ import annotations

import ast
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.loyalty import DEFAULT_POLICY, CustomerState, evolve, sweep
from engine.loyalty.state import StateSummary, summarize
from engine.loyalty.state_codec import MAGIC
from schemas.events import InboundEvent
from tests.unit.loyalty_builders import at, erase, feedback, interest, purchase, refund, register, run

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def histories(draw: Any, customer: str = "c", max_events: int = 25) -> list[InboundEvent]:
    """A customer's events in time order: registrations, interest, purchases, refunds, feedback."""
    days = sorted(draw(st.lists(st.floats(0, 900), min_size=1, max_size=max_events)))
    events: list[InboundEvent] = []
    for day in days:
        kind = draw(st.sampled_from(["purchase", "purchase", "purchase", "feedback", "interest", "register", "refund"]))
        if kind == "purchase":
            events.append(purchase(customer, day, amount=str(draw(st.integers(1, 500)))))
        elif kind == "feedback":
            events.append(
                feedback(
                    customer, day,
                    nps=draw(st.none() | st.integers(0, 10)), csat=draw(st.none() | st.integers(1, 5)),
                    complaint=draw(st.booleans()), public=draw(st.booleans()), audience=draw(st.integers(0, 20_000)),
                )
            )  # fmt: skip
        elif kind == "interest":
            events.append(interest(customer, day))
        elif kind == "register":
            events.append(register(customer, day))
        else:
            bought = [e for e in events if e.type == "purchase.completed"]
            if bought:
                events.append(refund(customer, day, draw(st.sampled_from(bought)).order_id))  # type: ignore[union-attr]
    return events or [purchase(customer, days[0])]


def decisions(outcomes: list[Any]) -> list[str]:
    return [e.event_id for o in outcomes for e in o.emitted]


@PROPERTY
@given(histories(), st.data())
def test_a_repeated_event_changes_nothing(events: list[InboundEvent], data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(events) - 1))
    replayed = [*events[: index + 1], events[index], *events[index + 1 :]]
    state_once, once = run(events)
    state_twice, twice = run(replayed)
    assert state_twice == state_once
    assert decisions(twice) == decisions(once)
    assert twice[index + 1].duplicate and twice[index + 1].emitted == ()


@PROPERTY
@given(histories("a", 12), histories("b", 12), st.randoms(use_true_random=False))
def test_interleaving_independent_customers_changes_nothing(
    a: list[InboundEvent], b: list[InboundEvent], rnd: Any
) -> None:
    queues, merged = [list(a), list(b)], []  # any interleaving that keeps each customer's own order
    while queues[0] or queues[1]:
        side = rnd.choice([i for i in (0, 1) if queues[i]])
        merged.append(queues[side].pop(0))
    states: dict[str, CustomerState | None] = {"a": None, "b": None}
    emitted: dict[str, list[str]] = {"a": [], "b": []}
    for event in merged:
        outcome = evolve(states[event.customer_id], event, DEFAULT_POLICY)
        states[event.customer_id] = outcome.state
        emitted[event.customer_id] += [e.event_id for e in outcome.emitted]
    for name, events in (("a", a), ("b", b)):
        alone, outcomes = run(events)
        assert states[name] == alone
        assert emitted[name] == decisions(outcomes)


@PROPERTY
@given(st.integers(0, 11), st.integers(0, 400))
def test_eleven_positives_never_outweigh_one_negative_and_twelve_do(extra_days: int, start: int) -> None:
    negative = feedback("c", start, complaint=True)
    positives = [feedback("c", start + 1 + i, csat=5) for i in range(11)]
    state, _ = run([negative, *positives])
    assert state is not None and state.satisfaction == "dissatisfied"
    twelfth = feedback("c", start + 12 + extra_days / 100, csat=5)
    state, _ = run([negative, *positives, twelfth])
    assert state is not None and state.satisfaction == "satisfied"


@PROPERTY
@given(histories(max_events=40), st.floats(1, 800))
def test_no_perk_twice_within_its_cooldown_and_never_more_than_the_cap(
    events: list[InboundEvent], later: float
) -> None:
    state, outcomes = run(events)
    assert state is not None
    outcomes.append(sweep(state, at(900 + later), DEFAULT_POLICY))
    granted = [e for o in outcomes for e in o.emitted if e.type == "perk.granted"]
    cooldown = timedelta(days=DEFAULT_POLICY.perks.cooldown_days)
    period = timedelta(days=DEFAULT_POLICY.perks.cap_period_days)
    for i, perk in enumerate(granted):
        for other in granted[:i]:
            assert not (other.perk == perk.perk and perk.occurred_at - other.occurred_at < cooldown)
        within = [o for o in granted[: i + 1] if perk.occurred_at - o.occurred_at < period]
        assert len(within) <= DEFAULT_POLICY.perks.cap
    assert len({p.perk_id for p in granted}) == len(granted)  # no id stands for two perks


@PROPERTY
@given(histories(max_events=30))
def test_suppressed_perks_are_explained_not_lost(events: list[InboundEvent]) -> None:
    _, outcomes = run(events)
    for held in (s for o in outcomes for s in o.suppressed):
        assert held.reason in {"cooldown", "cap"} and "Held back" in held.explanation and held.perk_id


@PROPERTY
@given(histories(max_events=30), st.floats(1, 900))
def test_sweeping_more_often_gives_the_same_result(events: list[InboundEvent], horizon: float) -> None:
    state, _ = run(events)
    assert state is not None
    end = state.clock + timedelta(days=horizon)
    once = sweep(state, end, DEFAULT_POLICY)
    stepwise, emitted = state, []
    moment = state.clock
    while moment < end:
        moment = min(end, moment + timedelta(days=7))
        outcome = sweep(stepwise, moment, DEFAULT_POLICY)
        emitted += [e.event_id for e in outcome.emitted]
        stepwise = outcome.state  # type: ignore[assignment]
    assert stepwise == once.state
    assert emitted == [e.event_id for e in once.emitted]


@PROPERTY
@given(histories(max_events=40))
def test_state_is_bounded_and_round_trips(events: list[InboundEvent]) -> None:
    state, _ = run(events)
    assert state is not None
    assert len(state.seen_ids) <= DEFAULT_POLICY.dedup_memory
    assert len(state.purchases) <= DEFAULT_POLICY.max_tracked_purchases
    assert len(state.decisions) <= 10
    stored = state.encode()
    assert stored.startswith(MAGIC) and len(stored) < len(state.to_json())  # a zstd frame, smaller than the JSON
    assert CustomerState.decode(stored) == state
    assert CustomerState.from_json(state.to_json()) == state
    assert CustomerState.decode(state.to_json()) == state  # the plain JSON states were stored as before the codec
    # what a worker learns of a customer it receives with a partition is the state's own (issue 18's fast scan)
    summary = StateSummary(**{name: getattr(state, name) for name in StateSummary.__struct_fields__})
    assert summarize(stored) == summary
    assert summarize(state.to_json()) == summary


def test_state_stays_bounded_over_a_long_history() -> None:
    events = [purchase("c", day * 0.5) for day in range(3000)]  # four years, two purchases a day
    state, _ = run(events)
    assert state is not None
    assert len(state.purchases) <= DEFAULT_POLICY.max_tracked_purchases
    assert len(state.seen_ids) == DEFAULT_POLICY.dedup_memory


@PROPERTY
@given(histories(max_events=20))
def test_erasure_leaves_nothing_of_the_customer(events: list[InboundEvent]) -> None:
    state, _ = run([*events, erase("c", 1000)])
    assert state is None


def test_the_core_imports_no_kafka_no_faust_and_never_reads_the_wall_clock() -> None:
    forbidden_modules = {"faust", "mode", "kafka", "aiokafka", "time", "socket", "asyncio", "os", "random"}
    forbidden_calls = {"now", "utcnow", "today", "open", "monotonic", "perf_counter"}  # (the time module is banned)
    core = Path(__file__).resolve().parents[2] / "engine" / "loyalty"
    for path in core.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                names = {(node.module or "").split(".")[0]}
            else:
                names = set()
            assert not names & forbidden_modules, f"{path.name} imports {names & forbidden_modules}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute | ast.Name):
                called = node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id
                assert called not in forbidden_calls, f"{path.name} calls {called}()"


def test_a_perk_id_is_derived_from_its_inputs() -> None:
    events = [purchase("c", 0), purchase("c", 10)]
    first = Counter(e.event_id for o in run(events)[1] for e in o.emitted)
    again = Counter(e.event_id for o in run(events)[1] for e in o.emitted)
    assert first == again
