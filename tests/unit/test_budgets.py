"""Perk budgets: shares that sum to the budget, a ledger that counts a perk id once whatever the redeliveries, that
saves and restores exactly, and closes old periods; and through the core, an event applied twice spends one grant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.broker import partitioner
from engine.loyalty import CustomerState, Policy, evolve_in_place
from engine.loyalty.budgets import KEPT_AFTER, BudgetError, Ledgers, PartitionLedger, Period, partition_of, share
from engine.loyalty.perk_rules import Budget
from tests.unit.loyalty_builders import every_n_days, run

DEC = Period(datetime(2025, 12, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))
AT = datetime(2025, 12, 10, tzinfo=UTC)


@given(st.integers(min_value=1, max_value=100_000), st.integers(min_value=1, max_value=1024))
def test_the_shares_of_a_budget_sum_to_it_and_differ_by_at_most_one(limit: int, partitions: int) -> None:
    shares = [share(limit, partitions, p) for p in range(partitions)]
    assert sum(shares) == limit
    assert max(shares) - min(shares) <= 1
    assert shares == sorted(shares, reverse=True)  # the first limit % partitions get one more


def test_shares_of_100_over_8_partitions() -> None:
    assert [share(100, 8, p) for p in range(8)] == [13, 13, 13, 13, 12, 12, 12, 12]
    assert [share(3, 8, p) for p in range(8)] == [1, 1, 1, 0, 0, 0, 0, 0]


@given(st.text(max_size=40), st.integers(min_value=1, max_value=64))
def test_the_cores_partitioner_is_kafkas_default(customer_id: str, partitions: int) -> None:
    assert partition_of(customer_id, partitions) == partitioner.partition_of(customer_id.encode(), partitions)


def test_a_perk_id_counts_once_however_often_it_is_taken() -> None:
    ledger = PartitionLedger(partition=0, partitions=8)  # share of 20: 3
    taken = [ledger.take("c", "rule", DEC, AT, 20, pid).result for pid in ("p1", "p1", "p2", "p1", "p3", "p2")]
    assert taken == ["taken"] * 6 and ledger.counted("rule", DEC.start) == {"p1", "p2", "p3"}
    # The share spent: a new id is held back, one counted before is granted again (a redelivery after a crash).
    assert ledger.take("c", "rule", DEC, AT, 20, "p4") == ("spent", 3)
    assert ledger.take("c", "rule", DEC, AT, 20, "p2") == ("taken", 3)
    # Another budget, or the next period, counts apart.
    assert ledger.take("c", "other", DEC, AT, 20, "p4").result == "taken"
    january = Period(DEC.end, datetime(2026, 2, 1, tzinfo=UTC))
    assert ledger.take("c", "rule", january, DEC.end, 20, "p5").result == "taken"
    assert ledger.counted("rule", DEC.start) == {"p1", "p2", "p3"}


def test_a_partition_with_no_share_grants_nothing() -> None:
    ledger = PartitionLedger(partition=5, partitions=8)
    assert ledger.take("c", "rule", DEC, AT, 3, "p1") == ("spent", 0)


def test_a_saved_ledger_restores_to_the_same_counts() -> None:
    ledger = PartitionLedger(partition=2, partitions=8)
    for pid in ("b", "a", "c"):
        ledger.take("c", "vip/priority_service", DEC, AT, 100, pid)
    assert ledger.unsaved
    raw = ledger.to_json()
    ledgers = Ledgers(8)
    restored = ledgers.restore(raw)
    assert ledgers.of_partition(2) is restored and not restored.unsaved
    assert restored.to_json() == raw and restored.latest == AT
    assert restored.counted("vip/priority_service", DEC.start) == {"a", "b", "c"}
    assert restored.take("c", "vip/priority_service", DEC, AT, 100, "a").result == "taken"
    assert not restored.unsaved  # an id counted before changes nothing to save
    with pytest.raises(BudgetError, match="kept for 8 partitions, the topics have 4"):
        Ledgers(4).restore(raw)


def test_a_period_closes_35_days_after_it_ends_and_is_forgotten() -> None:
    ledger = PartitionLedger(partition=0, partitions=1)
    assert ledger.take("c", "rule", DEC, AT, 10, "p1").result == "taken"
    closing = DEC.end + KEPT_AFTER
    february = Period(datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC))
    ledger.take("c", "rule", february, closing - timedelta(seconds=1), 10, "p2")
    assert ledger.take("c", "rule", DEC, AT, 10, "p3").result == "taken"  # a late decision, still counted
    ledger.take("c", "rule", february, closing, 10, "p4")
    assert ledger.take("c", "rule", DEC, AT, 10, "p1").result == "closed"
    assert b"p1" not in ledger.to_json() and b"p4" in ledger.to_json()


def _utc(*fields: int) -> datetime:
    return datetime(*fields, tzinfo=UTC)


@pytest.mark.parametrize(
    ("per", "at", "start", "end"),
    [
        ("day", _utc(2025, 12, 31, 23, 59), _utc(2025, 12, 31), _utc(2026, 1, 1)),
        ("week", _utc(2025, 12, 31, 12), _utc(2025, 12, 29), _utc(2026, 1, 5)),  # from Monday
        ("month", _utc(2025, 12, 31, 12), _utc(2025, 12, 1), _utc(2026, 1, 1)),
        ("month", _utc(2026, 2, 1), _utc(2026, 2, 1), _utc(2026, 3, 1)),
        ("year", _utc(2025, 7, 4), _utc(2025, 1, 1), _utc(2026, 1, 1)),
    ],
)
def test_budget_periods_are_calendar_periods_in_utc(per: str, at: datetime, start: datetime, end: datetime) -> None:
    budget = Budget.model_validate({"max": 1, "per": per})
    assert budget.period_of(at) == (start, end)
    # The same moment written in another offset (past midnight in Madrid at 23:59 UTC) is in the same period.
    assert budget.period_of(at.astimezone(timezone(timedelta(hours=2)))) == (start, end)


BUDGETED = Policy.model_validate(
    {"perk_rules": [{"trigger": "enters.buyer", "perks": ["welcome_offer"], "budget": {"max": 1, "per": "month"}}]}
)


def test_an_event_applied_again_after_a_crash_spends_its_grant_once() -> None:
    """A worker that saved its ledger but not the customer's state applies the event again from the older state: the
    perk is granted again under the same id, and the budget still counts one grant."""
    ledgers = Ledgers(1)
    first = every_n_days("c-1", 1, gap=1)[0]
    outcome = evolve_in_place(None, first, BUDGETED, ledgers)
    again = evolve_in_place(None, first, BUDGETED, ledgers)  # the state was lost, the ledger was not
    ids = [[e.perk_id for e in o.emitted if e.type == "perk.granted"] for o in (outcome, again)]
    assert ids[0] == ids[1] and len(ids[0]) == 1
    assert ledgers.of_partition(0).counted("enters.buyer", datetime(2025, 1, 1, tzinfo=UTC)) == set(ids[0])
    # Another customer the same month finds the budget spent.
    other = evolve_in_place(None, every_n_days("c-2", 1, gap=1)[0], BUDGETED, ledgers)
    assert not [e for e in other.emitted if e.type == "perk.granted"]
    (held,) = other.suppressed
    assert (held.perk, held.reason, held.rule) == ("welcome_offer", "budget", "enters.buyer")
    assert held.explanation == (
        "Held back: rule enters.buyer grants at most 1 grant a month across all customers; the 1 of them for this "
        "customer's partition are spent for 2025-01."
    )


def test_without_a_ledger_a_budgeted_perk_is_held_back_and_said_so() -> None:
    state, outcomes = run(every_n_days("c", 1, gap=1), BUDGETED)
    assert isinstance(state, CustomerState)
    (held,) = outcomes[0].suppressed
    assert held.reason == "budget" and "no budget ledger" in held.explanation
