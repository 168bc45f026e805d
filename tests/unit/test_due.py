"""The due sweep: the calendar's entries by day then id, stale ones checked against the state, states swept in place."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.loyalty import DEFAULT_POLICY, CustomerState
from engine.loyalty.due import DueCalendar, sweep_due
from tests.unit.loyalty_builders import T0, purchase, run

pytestmark = pytest.mark.unit

DAY = timedelta(days=1)


def bought(customer: str, days: float) -> CustomerState:
    """A customer with one purchase `days` after T0: due when that purchase first counts for inactivity."""
    state, _ = run([purchase(customer, days)])
    assert state is not None and state.due is not None
    return state


def test_due_customers_are_swept_in_place_by_day_then_id_with_their_due_moment_before() -> None:
    states = {"c-9": bought("c-9", 0), "c-1": bought("c-1", 0), "c-5": bought("c-5", 0), "c-0": bought("c-0", 3)}
    first, later = states["c-1"].due, states["c-0"].due
    assert first is not None and later is not None and later > first
    calendar = DueCalendar([(later, "c-0"), (first, "c-9"), (first, "c-5"), (first, "c-1")])

    swept = list(sweep_due(calendar, later, states.get, DEFAULT_POLICY))

    assert [(customer_id, due_before) for customer_id, _, due_before in swept] == [
        ("c-1", first),
        ("c-5", first),
        ("c-9", first),
        ("c-0", later),  # a later day comes after, whatever its customer id
    ]
    for customer_id, outcome, due_before in swept:
        state = states[customer_id]
        assert outcome.state is state and state.clock == due_before  # the loaded state itself was swept
        assert state.due is None or state.due > later
    assert len(calendar) == 0  # filing the swept customers again is the caller's part


def test_a_customer_whose_due_moment_moved_past_until_is_filed_again_under_it() -> None:
    state = bought("c-1", 0)
    actual = state.due
    assert actual is not None
    clock = state.clock
    calendar = DueCalendar([(actual - 30 * DAY, "c-1")])  # filed before a later event moved the due moment

    assert list(sweep_due(calendar, actual - DAY, {"c-1": state}.get, DEFAULT_POLICY)) == []
    assert calendar.entries() == [(actual, "c-1")]
    assert state.clock == clock  # not swept


def test_a_stale_entry_still_due_sweeps_with_the_state_s_own_due_moment() -> None:
    state = bought("c-1", 0)
    actual = state.due
    assert actual is not None
    calendar = DueCalendar([(actual - 30 * DAY, "c-1")])

    [(customer_id, _, due_before)] = sweep_due(calendar, actual, {"c-1": state}.get, DEFAULT_POLICY)

    assert (customer_id, due_before) == ("c-1", actual)


def test_missing_customers_and_customers_no_longer_due_are_dropped() -> None:
    states = {"idle": CustomerState(customer_id="idle", clock=T0)}  # nothing that time could change: due is None
    calendar = DueCalendar([(T0 + DAY, "gone"), (T0 + DAY, "idle")])

    assert list(sweep_due(calendar, T0 + 2 * DAY, states.get, DEFAULT_POLICY)) == []
    assert len(calendar) == 0


def test_the_sweep_is_lazy_so_the_caller_records_each_outcome_before_the_next_is_computed() -> None:
    states = {"c-1": bought("c-1", 0), "c-2": bought("c-2", 0)}
    due = states["c-1"].due
    assert due is not None and states["c-2"].due == due
    calendar = DueCalendar([(due, "c-1"), (due, "c-2")])
    sweep = sweep_due(calendar, due, states.get, DEFAULT_POLICY)

    customer_id, _, _ = next(sweep)
    assert customer_id == "c-1" and states["c-1"].clock == due
    assert states["c-2"].clock < due  # not swept yet
    calendar.add(due, "c-0")  # filed while recording c-1's outcome: still taken in this sweep, after c-2
    states["c-0"] = bought("c-0", 0)

    assert [customer_id for customer_id, _, _ in sweep] == ["c-2", "c-0"]
