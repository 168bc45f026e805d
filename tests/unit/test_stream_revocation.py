"""Revocation on a worker (issue 19, item 2; engine/loyalty/revocation.py), over the fakes of
tests/unit/stream_fakes.py: a refund within the hold publishes the `perk.revoked` the replay publishes, in its place
among the decisions; a referred friend's refund sends the referrer a reversal on the internal topic (a `Reverted`
record, keyed by the referrer), which the referrer's owner applies in event-time order like a credit; a refund that
may undo a conversion holds the referral frontier as a possible first purchase does."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from engine.broker.partitioner import partition_of
from engine.loyalty import Policy
from engine.offline.replay import Replay
from engine.stream import records
from engine.stream.referrals import ReferralFrontier
from schemas.construct import flat_json
from schemas.decoder import DecodeLimits
from schemas.events import InboundEvent
from tests.unit.loyalty_builders import purchase, refund, register, run
from tests.unit.stream_fakes import Harness

pytestmark = pytest.mark.unit

PURCHASES, CUSTOMERS = "purchases", "customers"
PARTITIONS = 2
HOLD = Policy.model_validate({"perks": {"refund_hold_days": 14}})
WAIT = Policy.model_validate({"perks": {"refund_hold_days": 14, "referral_hold_days": 7}})


def on(partition: int, name: str) -> str:
    return next(f"{name}-{n}" for n in range(1000) if partition_of(f"{name}-{n}".encode(), PARTITIONS) == partition)


FRIEND, REFERRER = on(0, "friend"), on(1, "ref")


def replayed(events: list[InboundEvent], policy: Policy) -> list[dict[str, Any]]:
    """The decisions `escalera replay` publishes for the events in this order, as published."""
    found: list[dict[str, Any]] = []
    keep = lambda decision: found.append(orjson.loads(flat_json(decision)))  # noqa: E731
    replay = Replay(policy, DecodeLimits(currencies=policy.currencies), datetime.now(UTC), keep, lambda _: None,
                    PARTITIONS)  # fmt: skip
    for event in events:
        replay.feed(event.model_dump_json().encode())
    return found


def history(refund_day: float) -> list[InboundEvent]:
    """The referrer and a friend they referred; the friend's first purchase (day 1) converts the referral, the
    referrer buys on day 2 and the friend's purchase is fully refunded on `refund_day`."""
    bought = purchase(FRIEND, 1)
    return [
        register(REFERRER, 0),
        register(FRIEND, 0.5, referred_by=REFERRER),
        bought,
        purchase(REFERRER, 2),
        refund(FRIEND, refund_day, bought.order_id),
    ]


def feed(h: Harness, events: list[InboundEvent]) -> None:
    """The events in one batch, then what the worker sent itself on the internal topic (the copies of its credits
    and reversals, and its ticks) until it sends nothing more."""
    h.run(*(h.event(CUSTOMERS if e.type.startswith("customer.") else PURCHASES, e) for e in events))
    while sent := h.internal_records():
        h.run(*sent)


def test_a_refunded_referral_revokes_its_reward_on_the_worker_as_in_the_replay() -> None:
    h = Harness(partitions=PARTITIONS, policy=HOLD)
    events = history(refund_day=5)
    feed(h, events)
    decisions = h.decisions()
    assert decisions == replayed(events, HOLD)  # the same decisions, revocations in their place, in the same order
    [reward] = [d for d in decisions if d["type"] == "perk.granted" and d["perk"] == "referral_reward"]
    [revoked] = [d for d in decisions if d["type"] == "perk.revoked" and d["customer_id"] == REFERRER]
    assert (revoked["perk_id"], revoked["perk"], revoked["customer_id"]) == (reward["perk_id"], "referral_reward",
                                                                             REFERRER)  # fmt: skip
    assert revoked["rule"] == "referral.refunded" and revoked["caused_by"] == events[-1].event_id
    referrer = h.table.state(REFERRER)
    assert referrer is not None and referrer.converted_referrals == 0
    [sent] = h.sent_to_internal(records.REVERTED)
    assert sent.key == REFERRER.encode()  # to the referrer's partition, as a credit goes
    assert h.metric("escalera_perks_total", perk="referral_reward", outcome="revoked") == 1
    assert h.metric("escalera_perks_total", perk="welcome_offer", outcome="revoked") == 1  # the friend's own
    assert h.metric("escalera_referral_reversals_total") == 1
    assert h.metric("escalera_referral_credits_total") == 1


def test_a_refund_after_the_hold_revokes_nothing() -> None:
    h = Harness(partitions=PARTITIONS, policy=HOLD)
    events = history(refund_day=16)
    feed(h, events)
    assert h.decisions() == replayed(events, HOLD)
    assert not [d for d in h.decisions() if d["type"] == "perk.revoked"]
    assert h.sent_to_internal(records.REVERTED) == []
    referrer = h.table.state(REFERRER)
    assert referrer is not None and referrer.converted_referrals == 1


@pytest.mark.parametrize("refund_day", [4, 10])
def test_a_referral_reward_waits_for_its_hold_and_a_refund_within_it_cancels_or_revokes_it(refund_day: float) -> None:
    """Referral hold 7 days: refunded on day 4 the waiting credit is dropped (nothing granted, nothing revoked);
    refunded on day 10 the reward granted at the first midnight after the hold is revoked."""
    h = Harness(partitions=PARTITIONS, policy=WAIT)
    events = history(refund_day)
    feed(h, events)
    decisions = h.decisions()
    assert decisions == replayed(events, WAIT)
    rewards = [d for d in decisions if d.get("perk") == "referral_reward"]
    assert [d["type"] for d in rewards] == ([] if refund_day < 8 else ["perk.granted", "perk.revoked"])


def test_a_reversal_crosses_to_the_worker_owning_the_referrer() -> None:
    """Two workers, one partition each: the friend's owner sends the referrer's owner the credit, then the reversal,
    on the internal topic; the referrer's owner applies both in event-time order with the referrer's own events (the
    referrer's purchase on day 2 lies between them), and together they publish what the replay publishes."""
    workers = [Harness(partitions=PARTITIONS, policy=HOLD, owned=[p]) for p in range(PARTITIONS)]
    events = history(refund_day=5)
    for h in workers:
        mine = [e for e in events if h.partition_of(e.customer_id) in h.processor.owned_partitions()]
        h.run(*(h.event(CUSTOMERS if e.type.startswith("customer.") else PURCHASES, e) for e in mine))
    exchange(workers)
    sent = [s.value[:1] for s in workers[0].channels.internal.sent if s.value[:1] in (records.CREDIT, records.REVERTED)]
    assert sent == [records.CREDIT, records.REVERTED]
    everything = replayed(events, HOLD)
    for h in workers:
        customer = FRIEND if h is workers[0] else REFERRER
        assert h.decisions() == [d for d in everything if d["customer_id"] == customer]
    state = workers[1].table.state(REFERRER)
    assert state is not None and state.converted_referrals == 0


def exchange(workers: list[Harness], rounds: int = 12) -> None:
    """Carry what each worker sends to the others, as Kafka would: its internal records to the owner of the
    partition they go to, its partition summaries to every worker's population board; each partition ticks once a
    round."""
    stats_read = [0] * len(workers)
    for _ in range(rounds):
        inbox: dict[int, list[tuple[bytes | None, bytes, int]]] = {i: [] for i in range(len(workers))}
        for h in workers:
            for sent in h.channels.internal.sent[h.internal_read :]:
                partition = sent.partition if sent.partition is not None else h.partition_of(sent.key.decode())
                inbox[partition].append((sent.key, sent.value, partition))
            h.internal_read = len(h.channels.internal.sent)
        for n, h in enumerate(workers):
            for sent in h.channels.partition_stats.sent[stats_read[n] :]:
                for other in workers:
                    if other is not h:
                        other.processor.board.read(sent.key, sent.value)
            stats_read[n] = len(h.channels.partition_stats.sent)
        for n, h in enumerate(workers):
            topic = h.settings.internal_topic
            batch = [h.record(topic, value, key, partition) for key, value, partition in inbox[n]]
            h.run(*batch, h.internal(records.Tick(), partition=n))


def test_a_refund_that_may_undo_a_conversion_holds_the_frontier_under_a_policy_with_holds() -> None:
    bought = purchase(FRIEND, 1)
    undo = refund(FRIEND, 5, bought.order_id)
    state, _ = run([register(FRIEND, 0.5, referred_by=REFERRER), bought], HOLD)
    assert state is not None and state.held
    with_holds, without = ReferralFrontier(PARTITIONS, holds=True), ReferralFrontier(PARTITIONS)
    assert with_holds.may_convert(undo, state)
    assert not without.may_convert(undo, state)
    alone, _ = run([purchase(FRIEND, 1)], HOLD)  # a purchase of a customer nobody referred: no conversion to undo
    assert alone is not None and not with_holds.may_convert(undo, alone)
    assert not with_holds.may_convert(undo, None)  # unknown and not referred
    with_holds.referred.add(FRIEND)
    assert with_holds.may_convert(undo, None)
    assert with_holds.frontier([(undo.occurred_at, undo)], [], lambda _: state) == undo.occurred_at
