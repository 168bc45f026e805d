"""Revocation (issue 19, item 2): a purchase fully refunded within the policy's refund hold takes back the perks it
earned (`perk.revoked`, naming each by its perk id), a referred friend's first purchase fully refunded undoes the
conversion on the referrer, and a referral hold makes the credit wait; off by default, with outputs and the policy
version unchanged."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.loyalty import DEFAULT_POLICY, CustomerState, Outcome, Policy, Published, evolve
from engine.loyalty.facts import credit_id
from engine.loyalty.outcome import derived_id
from engine.loyalty.perks import perk_id
from engine.offline.replay import Replay
from schemas.decoder import DecodeLimits
from schemas.events import PerkGranted, PerkRevoked, outbound_adapter, outbound_streams
from tests.unit.loyalty_builders import at, purchase, refund, register, run

NOW = datetime(2030, 1, 1, tzinfo=UTC)
HOLD = Policy.model_validate({"perks": {"refund_hold_days": 14}})
REFERRAL_HOLD = Policy.model_validate({"perks": {"referral_hold_days": 7}})


def granted(outcomes: list[Outcome]) -> list[PerkGranted]:
    return [d for o in outcomes for d in o.published() if isinstance(d, PerkGranted)]


def revoked(outcomes: list[Outcome]) -> list[PerkRevoked]:
    return [d for o in outcomes for d in o.published() if isinstance(d, PerkRevoked)]


def replayed(events: list[object], policy: Policy, as_of: datetime | None = None) -> tuple[Replay, list[Published]]:
    decisions: list[Published] = []
    replay = Replay(policy, DecodeLimits(currencies=policy.currencies), NOW, decisions.append, lambda _: None)
    for event in events:
        replay.feed(event.model_dump_json().encode())  # type: ignore[attr-defined]
    replay.finish(as_of)
    return replay, decisions


def test_a_welcome_offer_is_revoked_when_its_purchase_is_fully_refunded_within_the_hold() -> None:
    bought = purchase("c", 1)
    undone = refund("c", 5, bought.order_id)
    state, outcomes = run([register("c", 0), bought, undone], HOLD)
    [welcome] = granted(outcomes)
    assert welcome.perk == "welcome_offer" and welcome.caused_by == bought.event_id
    [revocation] = revoked(outcomes)
    assert revocation.perk_id == welcome.perk_id and revocation.perk == "welcome_offer"
    assert revocation.rule == "refund.revokes"
    assert revocation.caused_by == undone.event_id and revocation.occurred_at == undone.occurred_at
    assert revocation.event_id == derived_id("revoke", "c", "perk", welcome.perk_id, undone.event_id)
    assert revocation.evidence == {
        "order_id": bought.order_id,
        "purchased_at": bought.occurred_at.isoformat(),
        "hold_days": 14,
        "refunded_after_days": 4,
    }
    assert outbound_streams(revocation.type) == ("perks",)
    assert outbound_adapter.validate_json(revocation.model_dump_json()) == revocation
    assert state is not None and state.perks == [] and state.held == []  # forgotten by the cooldown and cap
    assert "perk_revoked" in [d["kind"] for d in state.decisions]
    # The refunded purchase no longer counts: the buyer rule stops holding (demoted after the grace, as always).
    assert state.step == "buyer" and state.demotion_pending_since == undone.occurred_at


def test_a_partial_refund_revokes_nothing_until_the_refunds_reach_the_whole_amount() -> None:
    bought = purchase("c", 1, amount="20")
    _, outcomes = run([bought, refund("c", 2, bought.order_id, amount="5")], HOLD)
    assert revoked(outcomes) == []
    last = refund("c", 3, bought.order_id, amount="15")
    state, outcomes = run([bought, refund("c", 2, bought.order_id, amount="5"), last], HOLD)
    assert [(r.perk, r.caused_by) for r in revoked(outcomes)] == [("welcome_offer", last.event_id)]
    # Refunded again once fully refunded: nothing more to take back.
    assert state is not None and revoked([evolve(state, refund("c", 4, bought.order_id), HOLD)]) == []


def test_a_refund_after_the_hold_revokes_nothing_and_the_hold_is_forgotten() -> None:
    bought = purchase("c", 1)
    state, outcomes = run([bought, refund("c", 1 + 14, bought.order_id)], HOLD)
    assert revoked(outcomes) == []
    assert state is not None and state.held == [] and [p for p, _ in state.perks] == ["welcome_offer"]
    # Any later event forgets a purchase whose hold is over.
    state, _ = run([bought, purchase("c", 16)], HOLD)
    assert state is not None and [entry[2] for entry in state.held] == [f"o-{state.seen_ids[-1]}"]


def test_without_a_hold_nothing_is_revoked_and_nothing_is_held() -> None:
    bought = purchase("c", 1)
    state, outcomes = run([bought, refund("c", 2, bought.order_id)])
    assert revoked(outcomes) == [] and state is not None and state.held == []


def test_the_perks_of_a_step_are_revoked_when_the_purchase_that_made_it_is_refunded() -> None:
    purchases = [purchase("c", day) for day in (0, 20, 40, 60)]
    fourth = purchases[-1]
    state, outcomes = run([*purchases, refund("c", 62, fourth.order_id)], HOLD)
    habitual = [g for g in granted(outcomes) if g.caused_by == fourth.event_id]
    assert {g.perk for g in habitual} == {"priority_service", "special_offer"}
    assert {(r.perk_id, r.perk) for r in revoked(outcomes)} == {(g.perk_id, g.perk) for g in habitual}
    assert state is not None and [p for p, _ in state.perks] == []  # (the welcome offer was forgotten already)
    # Habitual no longer holds (three purchases): the normal demotion, after the grace.
    assert state.step == "habitual" and state.demotion_pending_since == at(62)
    later = evolve(state, purchase("c", 100), HOLD)
    assert later.state is not None and later.state.step in {"occasional", "habitual"}


def referral_history() -> tuple[list[object], object, object]:
    friends_purchase = purchase("f", 3)
    undone = refund("f", 5, friends_purchase.order_id)
    events = [register("r", 0), purchase("r", 1), register("f", 2, referred_by="r"), friends_purchase, undone]
    return events, friends_purchase, undone


def test_a_referral_undone_within_the_hold_revokes_the_referrers_reward_and_counts_down() -> None:
    events, friends_purchase, undone = referral_history()
    replay, decisions = replayed(events, HOLD, as_of=at(60))
    credit = credit_id(friends_purchase.event_id)  # type: ignore[attr-defined]
    rewarded = [d for d in decisions if isinstance(d, PerkGranted) and d.customer_id == "r" and d.caused_by == credit]
    assert "referral_reward" in {g.perk for g in rewarded}
    taken = [d for d in decisions if isinstance(d, PerkRevoked) and d.customer_id == "r"]
    # Everything the conversion earned: the propagandist step's perks (among them the referral_reward).
    assert {(t.perk_id, t.perk) for t in taken} == {(g.perk_id, g.perk) for g in rewarded}
    assert {t.rule for t in taken} == {"referral.refunded"}
    assert {t.caused_by for t in taken} == {undone.event_id}  # type: ignore[attr-defined]
    assert {t.occurred_at for t in taken} == {undone.occurred_at}  # type: ignore[attr-defined]
    referrer = replay.states["r"]
    assert referrer.converted_referrals == 0 and referrer.held == []
    # Influence goes back down at once; the propagandist step after the grace, by the normal demotion.
    changes = [d for d in decisions if d.customer_id == "r" and d.type == "customer.classification_changed"]
    influence = [(d.from_value, d.to_value) for d in changes if d.dimension == "influence"]
    assert influence == [("none", "regular"), ("regular", "none")]
    steps = [
        (d.from_step, d.to_step, d.rule)
        for d in decisions
        if d.customer_id == "r" and d.type == "customer.step_changed"
    ]
    assert steps[-2:] == [
        ("buyer", "propagandist", "ladder.propagandist"),
        ("propagandist", "buyer", "ladder.demotion"),
    ]
    # The friend's own welcome offer goes too.
    assert [(d.customer_id, d.perk) for d in decisions if isinstance(d, PerkRevoked) and d.customer_id == "f"] == [
        ("f", "welcome_offer")
    ]
    assert replay.counts.perks_revoked["referral_reward"] == 1 and replay.counts.perks_revoked["welcome_offer"] == 1


def test_the_referral_hold_delays_the_credit_and_its_reward_with_the_same_ids() -> None:
    events, friends_purchase, _ = referral_history()
    kept = events[:-1]  # not refunded
    _, at_once = replayed(kept, DEFAULT_POLICY, as_of=at(30))
    replay, held = replayed(kept, REFERRAL_HOLD, as_of=at(30))
    credit = credit_id(friends_purchase.event_id)  # type: ignore[attr-defined]

    def referrers(decisions: list[Published]) -> list[Published]:
        return [d for d in decisions if d.customer_id == "r" and getattr(d, "caused_by", None) == credit]

    now, later = referrers(at_once), referrers(held)
    assert [type(d) for d in now] == [type(d) for d in later] and now
    assert [getattr(d, "perk_id", d.event_id) for d in now] == [getattr(d, "perk_id", d.event_id) for d in later]
    assert {d.occurred_at for d in now} == {at(3)}
    released = datetime(2025, 1, 12, tzinfo=UTC)  # the first midnight at least 7 days after the friend's purchase
    assert {d.occurred_at for d in later} == {released}
    reward = [d for d in later if isinstance(d, PerkGranted) and d.rule == "referral.converted"]
    for d in reward:
        assert d.perk_id == perk_id("r", "referral.converted", d.perk, credit)
    assert replay.states["r"].converted_referrals == 1 and replay.states["r"].held == []


def test_a_refund_within_the_referral_hold_cancels_the_waiting_credit() -> None:
    events, _, _ = referral_history()
    replay, decisions = replayed(events, REFERRAL_HOLD, as_of=at(30))
    referrer = replay.states["r"]
    assert referrer.converted_referrals == 0 and referrer.held == [] and referrer.step == "buyer"
    assert not any(
        d.customer_id == "r" and d.type in {"perk.revoked", "customer.step_changed"} and d.occurred_at > at(2)
        for d in decisions
    )
    assert [d.perk for d in decisions if isinstance(d, PerkGranted) and d.customer_id == "r"] == ["welcome_offer"]


def test_the_default_policy_keeps_its_version_and_the_holds_change_it() -> None:
    assert DEFAULT_POLICY.version == Policy.model_validate({"perks": {"refund_hold_days": 0}}).version
    assert len({DEFAULT_POLICY.version, HOLD.version, REFERRAL_HOLD.version}) == 3
    assert "refund_hold_days: 0" in DEFAULT_POLICY.to_yaml()
    with pytest.raises(ValueError):
        Policy.model_validate({"perks": {"refund_hold_days": -1}})


def test_a_stored_state_without_holds_is_stored_as_before_and_one_from_before_decodes() -> None:
    state, _ = run([purchase("c", 1)])
    assert state is not None and b'"held"' not in state.to_json()
    stored = orjson.loads(state.to_json())
    assert "held" not in stored
    assert CustomerState.decode(orjson.dumps(stored)) == state  # (plain JSON: how states were stored before)
    assert CustomerState.decode(state.encode()) == state


def test_a_state_with_holds_round_trips_through_the_codec() -> None:
    state, _ = run([purchase("c", 1)], HOLD)
    assert state is not None and len(state.held) == 1 and len(state.held[0][5]) == 1
    assert CustomerState.decode(state.encode()) == state
    assert CustomerState.decode(state.encode()).copy() == state


def test_the_replay_writes_revocations_to_the_perks_file_and_counts_them(tmp_path: Path) -> None:
    events, _, _ = referral_history()
    history = tmp_path / "events.jsonl"
    history.write_bytes(b"".join(e.model_dump_json().encode() + b"\n" for e in events))  # type: ignore[attr-defined]
    policy = tmp_path / "policy.yaml"
    policy.write_text("perks:\n  refund_hold_days: 14\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["replay", str(history), "--out", str(out), "--policy", str(policy)])
    assert result.exit_code == 0, result.output
    perks = [json.loads(line) for line in (out / "perks.jsonl").read_text().splitlines()]
    revocations = [p for p in perks if p["type"] == "perk.revoked"]
    granted_ids = {p["perk_id"] for p in perks if p["type"] == "perk.granted"}
    assert revocations and {r["perk_id"] for r in revocations} <= granted_ids
    assert not any(
        t["type"] == "perk.revoked" for t in map(json.loads, (out / "transitions.jsonl").read_text().splitlines())
    )
    summary = json.loads((out / "summary.json").read_text())
    # (the referrer's participation_invite was held back by the cap: never granted, so not revoked)
    assert summary["perks_revoked"] == {
        "raffle_entry": 1,
        "referral_reward": 1,
        "welcome_offer": 1,
    }


def test_the_summary_has_no_revocations_entry_without_any() -> None:
    from engine.offline.summary import summary

    replay, _ = replayed([purchase("c", 1)], DEFAULT_POLICY)
    assert "perks_revoked" not in summary(replay.states.values(), replay.counts, DEFAULT_POLICY, NOW)


def test_hold_times_are_event_times() -> None:
    bought = purchase("c", 1)
    just_in = refund("c", 1, bought.order_id)
    just_in = just_in.model_copy(update={"occurred_at": bought.occurred_at + timedelta(days=14, microseconds=-1)})
    _, outcomes = run([bought, just_in], HOLD)
    assert len(revoked(outcomes)) == 1
