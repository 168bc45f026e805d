"""The worker's pure parts: event-time merge, due calendar, population board, a partition's spends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.loyalty import CustomerState, Population
from engine.loyalty.classifications import volume
from engine.loyalty.due import DueCalendar
from engine.stream.merge import EventTimeMerge
from engine.stream.partitions import OwnedPartition
from engine.stream.population import PartitionSummary, PopulationBoard, population_record

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_the_merge_gives_the_earliest_head_and_keeps_each_input_in_its_own_order() -> None:
    merge: EventTimeMerge[str, str] = EventTimeMerge(["a", "b"])
    for minute, name in [(1, "a1"), (5, "a5"), (3, "a3-late")]:
        merge.push("a", at(minute), name)
    for minute, name in [(2, "b2"), (4, "b4")]:
        merge.push("b", at(minute), name)
    # a3-late comes after a5 in its input: an input's own order is never changed
    assert list(merge.release(lambda _: True)) == ["a1", "b2", "b4", "a5", "a3-late"]


def test_the_merge_waits_for_an_input_that_may_still_hold_an_earlier_event() -> None:
    merge: EventTimeMerge[str, str] = EventTimeMerge(["a", "b"])
    merge.push("a", at(5), "a5")
    assert list(merge.release(lambda key: key != "b")) == []  # b is empty and not read to its end
    merge.push("b", at(2), "b2")
    assert list(merge.release(lambda key: key != "b")) == ["b2"]  # b has no head again: wait
    assert list(merge.release(lambda _: True)) == ["a5"]


def test_ties_go_to_the_input_listed_first_and_nothing_passes_the_barrier() -> None:
    merge: EventTimeMerge[str, str] = EventTimeMerge(["first", "second"])
    merge.push("second", at(1), "s1")
    merge.push("first", at(1), "f1")
    merge.push("first", at(9), "f9")
    assert list(merge.release(lambda _: True, until=at(5))) == ["f1", "s1"]
    assert merge.pending() == 1
    assert list(merge.release(lambda _: True, until=at(9))) == ["f9"]


def test_dropping_an_input_drops_what_it_held() -> None:
    merge: EventTimeMerge[str, str] = EventTimeMerge(["a", "b"])
    merge.push("a", at(1), "a1")
    merge.push("b", at(2), "b2")
    merge.set_inputs(["b"])
    assert merge.pending() == 1
    assert list(merge.release(lambda _: True)) == ["b2"]


def test_the_calendar_gives_due_customers_by_day_then_id_once_each() -> None:
    calendar = DueCalendar([(at(2 * 1440), "c-2"), (at(1440), "c-9"), (at(1440), "c-1"), (at(1440), "c-1")])
    calendar.add(at(3 * 1440), "c-3")
    assert len(calendar) == 4
    assert list(calendar.take(at(2 * 1440))) == [(at(1440), "c-1"), (at(1440), "c-9"), (at(2 * 1440), "c-2")]
    assert calendar.entries() == [(at(3 * 1440), "c-3")]


def test_a_midnight_s_population_needs_every_partition_past_it_and_uses_each_one_s_spends_as_of_it() -> None:
    board = PopulationBoard(partitions=2, high_volume_share=Decimal("0.8"))
    day1, day2, day3 = at(1440), at(2 * 1440), at(3 * 1440)
    board.post(0, PartitionSummary(day1, at(1000), (Decimal("10.00"), Decimal("500.00"))))
    assert board.population_at(day1) is None and board.latest() == at(1000)  # partition 1 has not passed it
    board.post(1, PartitionSummary(day1, day1, (Decimal("40.00"), Decimal("50.00"))))
    spends = [Decimal("10.00"), Decimal("500.00"), Decimal("40.00"), Decimal("50.00")]
    assert board.population_at(day1) == Population.compute(spends, Decimal("0.8"))

    # Partition 0 passes two midnights unchanged, partition 1's spends change at the second: day 2 uses the old
    # copy of 1 (still valid then), day 3 the new one; day 3 waits for partition 0 to say it got there.
    board.post(0, PartitionSummary(day2, day2, None))
    board.post(1, PartitionSummary(day2, day2, None))
    board.post(1, PartitionSummary(day3, day3, (Decimal("900.00"),)))
    assert board.population_at(day2) == board.population_at(day1)
    assert board.population_at(day3) is None
    board.post(0, PartitionSummary(day3, day3, None))
    later = [Decimal("10.00"), Decimal("500.00"), Decimal("900.00")]
    assert board.population_at(day3) == Population.compute(later, Decimal("0.8"))
    assert board.latest() == day3

    board.forget_before(day3)  # the copies only earlier midnights needed go; what was computed stays known
    assert board.population_at(day2) == board.population_at(day1)


def test_a_partition_that_held_nobody_before_its_first_midnight_keeps_no_one_waiting_for_earlier_ones() -> None:
    """Workers start passing midnights at their own first event: one whose partitions start later says so."""
    board = PopulationBoard(partitions=2, high_volume_share=Decimal("0.8"))
    day1, day3 = at(1440), at(3 * 1440)
    board.post(1, PartitionSummary(day3, day3, (Decimal("70.00"),), empty_before=day3))
    board.post(0, PartitionSummary(day1, day1, (Decimal("10.00"),)))
    assert board.population_at(day1) == Population.compute([Decimal("10.00")], Decimal("0.8"))
    assert board.population_at(day3) is None  # partition 0 has not got there
    board.post(0, PartitionSummary(day3, day3, None))
    assert board.population_at(day3) == Population.compute([Decimal("10.00"), Decimal("70.00")], Decimal("0.8"))
    restarted = PopulationBoard(partitions=2, high_volume_share=Decimal("0.8"))
    restarted.read(b"1", PartitionSummary(day3, day3, (Decimal("70.00"),), empty_before=day3).to_bytes())
    restarted.read(b"0", PartitionSummary(day1, day1, (Decimal("10.00"),)).to_bytes())
    assert restarted.population_at(day1) == board.population_at(day1)


def test_a_population_computed_by_another_worker_is_known_after_a_restart() -> None:
    day = at(1440)
    population = Population.compute([Decimal("10.00"), Decimal("20.00")], Decimal("0.8"))
    restarted = PopulationBoard(partitions=2, high_volume_share=Decimal("0.8"))
    # Only later copies survive on the compacted topic: the midnight's population comes from its own record.
    restarted.read(b"0", PartitionSummary(day + timedelta(days=1), None, (Decimal("99.00"),)).to_bytes())
    restarted.read(*population_record(day, population))
    assert restarted.population_at(day) == population
    restarted.read(b"1", b"not a summary")  # an earlier version's record changes nothing
    assert restarted.population_at(day + timedelta(days=1)) is None


def test_a_partition_summary_survives_its_record_and_is_keyed_by_what_it_holds() -> None:
    summary = PartitionSummary(at(1440), at(7), (Decimal("0.01"), Decimal("123456.7800")))
    assert PartitionSummary.from_bytes(summary.to_bytes()) == summary
    unchanged = PartitionSummary(at(1440), None, None)
    assert PartitionSummary.from_bytes(unchanged.to_bytes()) == unchanged
    assert (summary.key(3), unchanged.key(3)) == (b"3", b"3:reached")
    board = PopulationBoard(partitions=4, high_volume_share=Decimal("0.8"))
    board.read(unchanged.key(3), unchanged.to_bytes())
    board.read(summary.key(3), summary.to_bytes())
    assert board.latest() == at(7)


spends_strategy = st.dictionaries(
    st.from_regex(r"c-[0-9]{1,3}", fullmatch=True),
    st.decimals(min_value=0, max_value=500, places=2),
    min_size=1,
    max_size=60,
)


def population_of(values: list[Decimal], share: str) -> Population:
    return Population.compute(values, Decimal(share))


@settings(max_examples=300, deadline=None)
@given(spends=spends_strategy, other=spends_strategy, share=st.sampled_from(["0.5", "0.8", "0.95"]))
def test_a_new_population_reclassifies_every_member_whose_volume_it_changes(
    spends: dict[str, Decimal], other: dict[str, Decimal], share: str
) -> None:
    """Only the members the new population can move are reclassified: none whose class changes is missed."""
    owned = OwnedPartition()
    for customer_id, spend in spends.items():
        owned.place(CustomerState(customer_id=customer_id, clock=T0), customer_id)
        owned.set_spend(customer_id, spend)
    old = population_of(list(spends.values()), share)
    new = population_of(list(spends.values()) + list(other.values()), share)
    owned.population = old
    moved = owned.movable(new)
    for customer_id, spend in spends.items():
        figures = SimpleNamespace(window_spend=spend)
        if volume(figures, old) != volume(figures, new):  # type: ignore[arg-type]
            assert customer_id in moved, (spend, old, new)
    assert moved <= owned.members


def test_a_member_s_spend_is_indexed_once_and_forgotten_when_it_leaves() -> None:
    owned = OwnedPartition()
    owned.set_spend("c-1", Decimal("10"))
    owned.set_spend("c-1", Decimal("30"))
    owned.set_spend("c-2", Decimal("20"))
    assert list(owned.by_spend) == [(Decimal("20"), "c-2"), (Decimal("30"), "c-1")]
    owned.changed = False
    owned.set_spend("c-2", Decimal("20"))
    assert not owned.changed  # an unchanged spend does not call for a new summary
    owned.set_spend("c-1", None)
    assert list(owned.by_spend) == [(Decimal("20"), "c-2")] and owned.spends == {"c-2": Decimal("20")}
    assert owned.changed


def test_with_a_grace_the_earliest_item_waits_for_an_empty_drained_input_until_it_has_waited_the_grace() -> None:
    merge: EventTimeMerge[str, str] = EventTimeMerge(["a", "b", "credits"])
    merge.push("a", at(5), "a5", 100.0)
    both_drained = lambda _: True  # noqa: E731
    assert list(merge.release(both_drained, grace=1.0, now=100.5)) == []  # b may still get an earlier event
    merge.push("b", at(3), "b3", 100.6)
    assert list(merge.release(both_drained, grace=1.0, now=100.7)) == []  # b3 is first, but has not waited yet
    assert list(merge.release(both_drained, grace=1.0, now=101.6)) == ["b3", "a5"]
    # an input that is never late (the worker's own credits) holds nothing back, and no grace is today's merge
    merge.push("a", at(9), "a9", 200.0)
    assert list(merge.release(both_drained, grace=1.0, now=200.0, graced=lambda key: key == "b")) == []
    assert list(merge.release(both_drained, grace=1.0, now=200.0, graced=lambda _: False)) == ["a9"]
    merge.push("a", at(10), "a10", 300.0)
    assert list(merge.release(both_drained, grace=0.0, now=300.0)) == ["a10"]


def test_the_merge_says_when_the_grace_its_next_item_waits_for_ends() -> None:
    merge: EventTimeMerge[str, str] = EventTimeMerge(["a", "b"])
    both_drained = lambda _: True  # noqa: E731
    assert merge.grace_ends(both_drained, grace=1.0) is None  # nothing queued
    merge.push("a", at(5), "a5", 100.0)
    assert merge.grace_ends(both_drained, grace=1.0) == 101.0  # b is empty and read to its end: a5 waits the grace
    assert merge.grace_ends(lambda key: key != "b", grace=1.0) is None  # b is not read to its end: not the grace
    assert merge.grace_ends(both_drained, grace=0.0) is None
    merge.push("b", at(7), "b7", 100.5)
    assert merge.grace_ends(both_drained, grace=1.0) is None  # every input has an item: a5 goes now
