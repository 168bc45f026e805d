"""Volume on event time (issue 15): decided at each midnight the stream passes, against the population as of it —
the same in the replay, in one worker and in several, and whatever order customers' events interleave in."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from unittest.mock import patch

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.loyalty import DEFAULT_POLICY, CustomerState, DecisionEvent, Population, evolve, volume
from engine.loyalty.volume import SpendBook, classify_day
from engine.offline.replay import Replay
from engine.stream import records
from engine.stream.population import PartitionSummary
from schemas.decoder import DecodeLimits
from schemas.events import InboundEvent
from tests.unit.loyalty_builders import at, purchase, register
from tests.unit.stream_fakes import Harness

pytestmark = pytest.mark.unit

PURCHASES = "shop.purchases"


def replayed(events: list[InboundEvent], as_of: datetime | None = None) -> tuple[Replay, list[DecisionEvent]]:
    decisions: list[DecisionEvent] = []
    limits = DecodeLimits(currencies=DEFAULT_POLICY.currencies)
    replay = Replay(DEFAULT_POLICY, limits, datetime.now(UTC), decisions.append, lambda _: None)
    for event in events:
        replay.feed(event.model_dump_json().encode())
    replay.finish(as_of)
    return replay, decisions


def volume_changes(decisions: list[DecisionEvent]) -> list[tuple[str, str, str, str]]:
    return [
        (d.customer_id, d.to_value, d.occurred_at.isoformat(), d.event_id)
        for d in decisions
        if d.type == "customer.classification_changed" and d.dimension == "volume"
    ]


def shop(days: int = 6) -> list[InboundEvent]:
    """Four customers buying different amounts on different days, in time order."""
    events: list[InboundEvent] = [register(f"c-{n}", 0) for n in range(4)]
    for day in range(days):
        for n in range(4):
            if (day + n) % 2 == 0:
                events.append(purchase(f"c-{n}", day + 0.1 * (n + 1), amount=str(10 * (n + 1) ** 2)))
    return sorted(events, key=lambda e: e.occurred_at)


def test_volume_is_decided_at_midnights_against_the_population_as_of_each() -> None:
    events = shop()
    replay, decisions = replayed(events)
    changes = volume_changes(decisions)
    assert changes, "volume was never classified"
    assert {when[11:] for _, _, when, _ in changes} == {"00:00:00+00:00"}  # at midnights only
    first_midnight = datetime(2025, 1, 2, tzinfo=UTC)
    assert min(datetime.fromisoformat(when) for _, _, when, _ in changes) == first_midnight
    # Nothing of the last day counts yet: the file ends before its midnight.
    last_day = max(e.occurred_at for e in events).date().isoformat()
    assert all(not when.startswith(last_day) for _, _, when, _ in changes)
    # Each change says what it compared, and its caused_by names the midnight.
    volume = [d for d in decisions if getattr(d, "dimension", None) == "volume"]
    assert all(d.caused_by == f"sweep:{d.occurred_at.date().isoformat()}" for d in volume)
    assert all({"window_spend", "high_volume_threshold", "customers_compared"} <= set(d.evidence) for d in volume)
    assert {s.volume for s in replay.states.values()} >= {"high", "low"}


def test_the_order_customers_interleave_in_within_a_day_changes_nothing() -> None:
    """What two workers, or one merge's tie-breaks, may do: each customer's events keep their order, the customers'
    are interleaved differently. Volume, its transitions and their ids stay the same."""
    events = shop()
    reference = volume_changes(replayed(events)[1])
    rng = random.Random(15)
    for _ in range(5):
        by_day: dict[str, list[InboundEvent]] = {}
        for event in events:
            by_day.setdefault(event.occurred_at.date().isoformat(), []).append(event)
        shuffled: list[InboundEvent] = []
        for day in sorted(by_day):
            customers = sorted({e.customer_id for e in by_day[day]})
            rng.shuffle(customers)
            shuffled.extend(e for c in customers for e in by_day[day] if e.customer_id == c)
        assert sorted(volume_changes(replayed(shuffled)[1])) == sorted(reference)


def test_the_replay_passes_every_midnight_up_to_as_of() -> None:
    events: list[InboundEvent] = [register("c-1", 0), purchase("c-1", 0.5, amount="100")]
    _, none_yet = replayed(events)
    assert volume_changes(none_yet) == []  # no midnight passed
    replay, decisions = replayed(events, as_of=at(400))  # the purchase leaves the window on the way
    assert [(to, when[:10]) for _, to, when, _ in volume_changes(decisions)] == [
        ("high", "2025-01-02"),
        ("none", "2026-01-02"),
    ]
    assert replay.states["c-1"].volume == "none"


def test_a_worker_passes_a_midnight_only_once_every_partition_has_posted_its_spends_as_of_it() -> None:
    h = Harness(partitions=2, owned=[0])
    customer = next(f"c-{n}" for n in range(50) if h.partition_of(f"c-{n}") == 0)
    first, later = purchase(customer, 0, amount="100"), purchase(customer, 2, amount="50")
    h.run(h.internal(records.Watermark((1,), None), partition=0))  # the other worker credits no referral
    h.run(h.event(PURCHASES, first))
    h.run(h.event(PURCHASES, later))  # after midnight: waits for partition 1's spends as of it
    posted = [(s.key, PartitionSummary.from_bytes(s.value)) for s in h.channels.partition_stats.sent]
    midnight = datetime(2025, 1, 2, tzinfo=UTC)
    assert (b"0", PartitionSummary(midnight, midnight, (Decimal("100.00"),), empty_before=midnight)) in posted
    assert len(h.decisions()) == len(evolve(None, first, DEFAULT_POLICY).emitted)  # `later` not applied yet
    assert h.processor.waiting == midnight

    h.processor.board.post(1, PartitionSummary(midnight, midnight, (Decimal("10.00"),)))  # as the reader does
    h.run()
    volume = [d for d in h.decisions() if d.get("dimension") == "volume"]
    assert [(d["to_value"], d["occurred_at"]) for d in volume] == [("high", "2025-01-02T00:00:00Z")]
    assert h.processor.waiting == datetime(2025, 1, 3, tzinfo=UTC)  # `later` comes after the next midnight too
    assert all(d["caused_by"] != later.event_id for d in h.decisions())
    h.processor.board.post(1, PartitionSummary(datetime(2025, 1, 3, tzinfo=UTC), None, None))  # passed, unchanged
    h.run()
    assert h.decisions()[-1]["caused_by"] == later.event_id and h.processor.waiting is None
    keys = [s.key for s in h.channels.partition_stats.sent]
    assert b"population:2025-01-02T00:00:00+00:00" in keys  # kept for a worker that restarts


def test_a_late_event_is_applied_counted_and_its_decisions_say_it_arrived_late() -> None:
    h = Harness(partitions=1)
    customer = "c-1"
    first, late = purchase(customer, 3), purchase(customer, 1, amount="500")
    h.run(h.event(PURCHASES, first))
    h.run(h.event(PURCHASES, late))
    assert h.metric("escalera_late_events_total", topic=PURCHASES) == 1
    assert h.metric("escalera_event_lateness_seconds_count") == 1
    state = h.table.state(customer)
    assert state is not None and len(state.purchases) == 2  # applied, not dropped
    caused = [d for d in h.decisions() if d["caused_by"] == late.event_id]
    assert caused and all(d["evidence"]["arrived_late"] == late.occurred_at.isoformat() for d in caused)
    assert all("arrived late" in d["explanation"] for d in caused)
    # The replay of the same arrival order decides the same, and counts it late too.
    replay, decisions = replayed([first, late])
    assert replay.counts.late == 1
    assert [orjson.loads(d.model_dump_json())["event_id"] for d in decisions] == [d["event_id"] for d in h.decisions()]


def test_an_event_in_time_order_says_nothing_of_lateness() -> None:
    _, decisions = replayed([register("c-1", 0), purchase("c-1", 1)])
    assert all("arrived_late" not in d.evidence for d in decisions)


@settings(max_examples=200, deadline=None)
@given(
    spends=st.dictionaries(
        st.from_regex(r"c-[0-9]{1,3}", fullmatch=True), st.decimals(min_value=0, max_value=5000, places=2), max_size=80
    ),
    gone=st.lists(st.from_regex(r"c-[0-9]{1,3}", fullmatch=True), max_size=10),
    share=st.sampled_from(["0.5", "0.8", "1"]),
)
def test_the_population_kept_as_spends_change_is_the_one_computed_from_scratch(
    spends: dict[str, Decimal], gone: list[str], share: str
) -> None:
    book = SpendBook()
    for customer_id, spend in spends.items():
        book.set_spend(customer_id, spend + 1)  # changed once before its last value
        book.set_spend(customer_id, spend)
    for customer_id in gone:
        book.set_spend(customer_id, None)
    left = [spend for customer_id, spend in spends.items() if customer_id not in gone]
    for chunk in (1, 3, volume._CHUNK):  # summed a chunk at a time: wherever the chunks break
        with patch.object(volume, "_CHUNK", chunk):
            assert book.population_of_all(Decimal(share)) == Population.compute(left, Decimal(share))


def test_a_midnight_passed_again_after_a_restart_decides_nothing_twice() -> None:
    """A restarted worker resumes from the midnight after its least advanced partition's time: customers whose
    class changed at that midnight or later are left alone (found on the real broker: the same volume changes were
    made again after a restart, tests/integration/test_transactions.py)."""
    small, big = purchase("c-1", 0, amount="100"), purchase("c-2", 5, amount="10000")
    replay, decisions = replayed([small, big], as_of=at(8))
    assert [(c, to, when[:10]) for c, to, when, _ in volume_changes(decisions) if c == "c-1"] == [
        ("c-1", "high", "2025-01-02"),
        ("c-1", "low", "2025-01-07"),
    ]
    first_midnight = datetime(2025, 1, 2, tzinfo=UTC)
    book = SpendBook()
    book.set_spend("c-1", Decimal(100))
    book.touched.add("c-1")  # restored
    alone = book.population_of_all(DEFAULT_POLICY.classification.high_volume_share)  # as it was at that midnight
    again = list(classify_day(book, first_midnight, alone, replay.states.get, DEFAULT_POLICY))
    assert again == [] and replay.states["c-1"].volume == "low"


def test_a_midnight_sums_the_window_again_when_a_purchase_left_it_since_the_evaluation() -> None:
    """`settle` takes the spend an evaluation found only while it holds: a purchase that counted then and has left
    the window by the midnight makes it sum the window again; a state changed since (its clock moved) too."""
    bought, evaluated = datetime(2025, 1, 1, 10, tzinfo=UTC), datetime(2026, 1, 1, 9, tzinfo=UTC)
    state = CustomerState("c-1", clock=evaluated)
    state.purchases = [("o-1", bought, Decimal(10), Decimal(0)), ("o-2", evaluated, Decimal(5), Decimal(0))]
    midnight = datetime(2026, 1, 2, tzinfo=UTC)  # the window now begins after 2025-01-02: o-1 has left it
    for note, expected in (
        ((evaluated, Decimal("15.00")), Decimal(5)),  # o-1 left the window: summed again
        ((evaluated - timedelta(hours=1), Decimal("15.00")), Decimal(5)),  # the state changed since: summed again
    ):
        book = SpendBook()
        book.touched.add("c-1")
        book.evaluated["c-1"] = note
        book.settle(midnight, {"c-1": state}.get, DEFAULT_POLICY)
        assert book.spends == {"c-1": expected} and not book.evaluated
    state.purchases = state.purchases[1:]  # nothing left the window: the evaluated spend is taken as it is
    book = SpendBook()
    book.touched.add("c-1")
    book.evaluated["c-1"] = (evaluated, Decimal("5.00"))
    book.settle(midnight, {"c-1": state}.get, DEFAULT_POLICY)
    assert str(book.spends["c-1"]) == "5.00"
