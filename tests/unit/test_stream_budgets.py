"""The worker counts perk budgets like the replay (engine/loyalty/budgets.py), over the fakes of
tests/unit/stream_fakes.py: each partition's ledger saved in the table after a batch that counted grants (after the
decisions are delivered, before the partition's states), taken back when the partition is received, dropped when it
is given away; a batch read again after a crash counts nothing twice."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from engine.broker.partitioner import partition_of
from engine.broker.table_keys import is_ledger_key, ledger_key
from engine.loyalty import Policy
from engine.loyalty.budgets import Ledgers, PartitionLedger, Period
from engine.offline.replay import Replay
from engine.stream.metrics import WorkerMetrics
from schemas.decoder import DecodeLimits
from tests.unit.loyalty_builders import purchase
from tests.unit.stream_fakes import FakeRecord, Harness

pytestmark = pytest.mark.unit

PURCHASES = "purchases"
PARTITIONS = 2
# welcome_offer at most twice a month: a share of one grant for each of the two partitions
BUDGETED = Policy.model_validate(
    {"perk_rules": [{"trigger": "enters.buyer", "perks": ["welcome_offer"], "budget": {"max": 2, "per": "month"}}]}
)
JANUARY = datetime(2025, 1, 1, tzinfo=UTC)


def on(partition: int, name: str) -> str:
    """A customer id Kafka's default partitioner puts on `partition` (of PARTITIONS)."""
    return next(f"{name}-{n}" for n in range(1000) if partition_of(f"{name}-{n}".encode(), PARTITIONS) == partition)


A0, B0, A1 = on(0, "a"), on(0, "b"), on(1, "a")


def first_purchases(h: Harness, *customers: str, day: float = 1) -> list[FakeRecord]:
    return [h.event(PURCHASES, purchase(customer, day + n / 10)) for n, customer in enumerate(customers)]


def granted(h: Harness) -> dict[str, str]:
    """Perk id -> customer, of every perk.granted sent."""
    return {d["perk_id"]: d["customer_id"] for d in h.decisions() if d["type"] == "perk.granted"}


def saved_ledger(h: Harness, partition: int) -> PartitionLedger | None:
    raw = h.table.parts.get(partition, {}).get(ledger_key(partition))
    return None if raw is None else PartitionLedger.from_json(raw)


def ledger_writes(h: Harness) -> list[tuple[int, int]]:
    """Each ledger write: (the partition its key names, the partition of the current event it was made under)."""
    return [(int(w.key.rsplit(b"/", 1)[1]), w.event.message.partition) for w in h.table.writes if is_ledger_key(w.key)]


def replayed(records: list[FakeRecord]) -> dict[str, str]:
    """Perk id -> customer, as `escalera replay` grants them with the same partition count."""
    found: dict[str, str] = {}

    def keep(decision: Any) -> None:
        if decision.type == "perk.granted":
            found[decision.perk_id] = decision.customer_id

    replay = Replay(BUDGETED, DecodeLimits(currencies=BUDGETED.currencies), datetime.now(UTC), keep, lambda _: None,
                    PARTITIONS)  # fmt: skip
    for record in records:
        replay.feed(record.value)
    return found


def test_a_batch_that_spends_a_budget_saves_the_ledger_after_the_decisions_and_before_the_states() -> None:
    h = Harness(partitions=PARTITIONS, policy=BUDGETED)
    batch = first_purchases(h, A0, B0, A1)
    h.run(*batch)

    perks = granted(h)
    assert sorted(perks.values()) == sorted([A0, A1]) and perks == replayed(batch)  # B0: partition 0's share spent
    assert h.metric("escalera_perks_total", perk="welcome_offer", outcome="suppressed_budget") == 1
    assert h.metric("escalera_perks_total", perk="welcome_offer", outcome="granted") == 2
    for partition, customer in ((0, A0), (1, A1)):
        ledger = saved_ledger(h, partition)
        assert ledger is not None and ledger.counted("enters.buyer", JANUARY) == {
            pid for pid, whom in perks.items() if whom == customer
        }
    assert sorted(ledger_writes(h)) == [(0, 0), (1, 1)]  # each in its own partition's changelog
    assert h.calls.index("flush") < min(h.calls.index(f"write {ledger_key(p).decode()}") for p in (0, 1))
    for partition, customers in ((0, (A0, B0)), (1, (A1,))):
        ledger_at = h.calls.index(f"write {ledger_key(partition).decode()}")
        assert all(ledger_at < h.calls.index(f"write {customer}") for customer in customers)
    assert not any(ledger.unsaved for ledger in h.processor.ledgers.by_partition.values())  # type: ignore[union-attr]


def test_a_batch_that_counts_no_grant_writes_no_ledger() -> None:
    h = Harness(partitions=PARTITIONS, policy=BUDGETED)
    h.run(*first_purchases(h, A0))
    writes = len(ledger_writes(h))
    h.run(h.event(PURCHASES, purchase(A0, 3)), *first_purchases(h, B0, day=4))  # nothing new granted, B0 held back
    assert len(ledger_writes(h)) == writes == 1


def test_without_budgets_no_ledger_is_kept() -> None:
    h = Harness(partitions=PARTITIONS)
    h.run(*first_purchases(h, A0, B0, A1))
    assert h.processor.ledgers is None and ledger_writes(h) == []
    assert len(granted(h)) == 3


def test_a_partition_received_takes_its_ledger_back_from_the_table() -> None:
    before = Harness(partitions=PARTITIONS, policy=BUDGETED)
    before.run(*first_purchases(before, A0))
    raw = before.table.parts[0][ledger_key(0)]

    after = Harness(partitions=PARTITIONS, policy=BUDGETED)  # another worker, or this one restarted
    after.table.parts.setdefault(0, {})[ledger_key(0)] = raw
    after.run(*first_purchases(after, B0, A1, day=2))
    assert sorted(granted(after).values()) == [A1]  # partition 0's share was spent before
    ledgers = after.processor.ledgers
    assert ledgers is not None and sorted(ledgers.by_partition) == [0, 1]
    assert ledgers.by_partition[0].counted("enters.buyer", JANUARY) == set(granted(before))


def test_the_customers_learned_from_the_table_leave_the_ledger_out() -> None:
    before = Harness(partitions=PARTITIONS, policy=BUDGETED)
    before.run(*first_purchases(before, A0, B0, A1))
    after = Harness(partitions=PARTITIONS, policy=BUDGETED)
    after.table.parts = {p: dict(part) for p, part in before.table.parts.items()}
    after.run()
    assert after.processor.partitions[0].members == {A0, B0}
    assert after.processor.partitions[1].members == {A1}


def test_a_partition_given_away_drops_its_ledger_and_takes_the_saved_one_when_it_comes_back() -> None:
    h = Harness(partitions=PARTITIONS, policy=BUDGETED)
    h.run(*first_purchases(h, A0, A1))
    ledgers = h.processor.ledgers
    assert ledgers is not None and sorted(ledgers.by_partition) == [0, 1]
    h.own([0])
    h.run(*first_purchases(h, B0, day=2))
    assert sorted(ledgers.by_partition) == [0]
    # Meanwhile partition 1's new owner counted a grant more there (saved in the table): taken back with it.
    elsewhere = PartitionLedger.from_json(h.table.parts[1][ledger_key(1)])
    period = Period(JANUARY, datetime(2025, 2, 1, tzinfo=UTC))
    elsewhere.take("x", "enters.buyer", period, datetime(2025, 1, 3, tzinfo=UTC), 4, "another-id")
    h.table.parts[1][ledger_key(1)] = elsewhere.to_json()
    h.own([0, 1])
    h.run()
    assert ledgers.by_partition[1].to_json() == elsewhere.to_json()


def test_a_batch_read_again_after_a_crash_counts_its_grants_once() -> None:
    """The ledger was saved but not the states (a crash between the two): the batch is read again from the older
    states, its grants taken again under the same ids, and nothing more is counted."""
    first = Harness(partitions=PARTITIONS, policy=BUDGETED)
    batch = first_purchases(first, A0, A1)
    first.run(*batch)
    ledgers = {p: first.table.parts[p][ledger_key(p)] for p in (0, 1)}

    again = Harness(partitions=PARTITIONS, policy=BUDGETED)
    for partition, raw in ledgers.items():
        again.table.parts.setdefault(partition, {})[ledger_key(partition)] = raw
    again.run(*[again.record(PURCHASES, r.value, r.key) for r in batch])  # the same events, read again
    assert granted(again) == granted(first)  # published again, under the same ids
    assert ledger_writes(again) == []  # nothing new counted: nothing to save
    again.run(*first_purchases(again, B0, day=2))
    assert set(granted(again)) == set(granted(first))  # partition 0's share is still spent


def test_a_batch_read_again_whose_states_were_kept_decides_nothing_and_saves_nothing() -> None:
    h = Harness(partitions=PARTITIONS, policy=BUDGETED)
    batch = first_purchases(h, A0, B0, A1)
    h.run(*batch)
    decisions, writes = len(h.decisions()), len(ledger_writes(h))
    h.run(*[FakeRecord(r.message, r.key, r.value) for r in batch])  # redelivered
    assert len(h.decisions()) == decisions and len(ledger_writes(h)) == writes


def test_a_ledger_kept_for_another_partition_count_stops_the_worker_naming_the_setting() -> None:
    ledger = Ledgers(4).of_partition(0)
    ledger.take(A0, "enters.buyer", Period(JANUARY, datetime(2025, 2, 1, tzinfo=UTC)), JANUARY, 8, "some-id")
    h = Harness(partitions=PARTITIONS, policy=BUDGETED)
    h.table.parts[0] = {ledger_key(0): ledger.to_json()}
    with pytest.raises(SystemExit) as stopped:
        h.run(*first_purchases(h, A0))
    message = str(stopped.value.code)
    assert "ESCALERA_TOPIC_PARTITIONS=2" in message and "kept for 4 partitions" in message
    assert "\n" not in message and granted(h) == {}


def test_the_perk_outcomes_of_every_reason_start_at_zero() -> None:
    registry = CollectorRegistry()
    WorkerMetrics(registry, ("purchases", "feedback", "customers"))
    for reason in ("cooldown", "cap", "window", "condition", "budget"):
        labels = {"perk": "welcome_offer", "outcome": f"suppressed_{reason}"}
        assert registry.get_sample_value("escalera_perks_total", labels) == 0


def test_the_saved_ledger_is_the_replays() -> None:
    """What a worker saves for a partition is what the replay's ledger holds for it, byte for byte."""
    h = Harness(partitions=PARTITIONS, policy=BUDGETED)
    batch = first_purchases(h, A0, B0, A1)
    h.run(*batch)
    replay = Replay(BUDGETED, DecodeLimits(currencies=BUDGETED.currencies), datetime.now(UTC), lambda _: None,
                    lambda _: None, PARTITIONS)  # fmt: skip
    for record in batch:
        replay.feed(record.value)
    for partition in (0, 1):
        assert h.table.parts[partition][ledger_key(partition)] == replay.ledgers.by_partition[partition].to_json()
