"""Each rule of DOMAIN.md at its boundaries, with the default policy."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.loyalty import DEFAULT_POLICY, Policy, Population, sweep
from engine.loyalty.classifications import _beyond, _overdue
from engine.loyalty.policy import Ladder
from tests.unit.loyalty_builders import (
    at,
    every_n_days,
    feedback,
    interest,
    perks_of,
    purchase,
    refund,
    register,
    run,
)


@pytest.mark.parametrize(("purchases", "step"), [(1, "buyer"), (2, "occasional"), (3, "occasional"), (4, "habitual")])
def test_purchases_in_the_window_climb_the_ladder(purchases: int, step: str) -> None:
    state, _ = run(every_n_days("c", purchases, gap=20))
    assert state is not None and state.step == step


@pytest.mark.parametrize(("gap", "step"), [(60, "habitual"), (61, "occasional")])
def test_habitual_needs_a_median_gap_of_at_most_60_days(gap: float, step: str) -> None:
    state, outcomes = run(every_n_days("c", 4, gap=gap))
    assert state is not None and state.step == step
    if step == "habitual":
        change = next(e for e in outcomes[-1].emitted if e.type == "customer.step_changed")
        assert change.evidence["median_gap_days"] == "60.0"
        assert "every 60.0 days at the median" in change.explanation


def test_a_fully_refunded_purchase_does_not_count() -> None:
    first = purchase("c", 0)
    state, _ = run([first, refund("c", 1, first.order_id, "20")])
    assert state is not None and state.step == "buyer"  # stays until the grace period is over
    later = sweep(state, at(40), DEFAULT_POLICY)
    assert later.state is not None and later.state.step == "possible"
    partial = purchase("d", 0)
    state, _ = run([partial, refund("d", 1, partial.order_id, "5")])
    assert state is not None and sweep(state, at(40), DEFAULT_POLICY).state.step == "buyer"  # type: ignore[union-attr]


@pytest.mark.parametrize(("share", "step"), [("0.79", "habitual"), ("0.8", "exclusive")])
def test_exclusive_needs_a_share_of_wallet_of_80_percent(share: str, step: str) -> None:
    events = [*every_n_days("c", 4, gap=20), feedback("c", 61, share_of_wallet=Decimal(share))]
    state, _ = run(events)
    assert state is not None and state.step == step


def test_without_a_share_of_wallet_nobody_is_exclusive() -> None:
    state, _ = run(every_n_days("c", 12, gap=10))
    assert state is not None and state.step == "habitual"


@pytest.mark.parametrize(("nps", "step"), [(8, "buyer"), (9, "propagandist")])
def test_propagandist_by_top_nps_and_a_public_positive_review(nps: int, step: str) -> None:
    events = [purchase("c", 0), feedback("c", 1, channel="review", nps=nps, csat=5, public=True, audience=10)]
    state, _ = run(events)
    assert state is not None and state.step == step


def test_propagandist_by_a_converted_referral_credits_the_referrer() -> None:
    state, _ = run([register("r", 0), purchase("r", 1)])
    friend, friend_outcomes = run([register("f", 2, referred_by="r"), purchase("f", 3)])
    credits = [credit for o in friend_outcomes for credit in o.referrals]
    assert [(c.customer_id, c.referred_customer_id) for c in credits] == [("r", "f")]
    from engine.loyalty import evolve

    credited = evolve(state, credits[0], DEFAULT_POLICY)
    assert credited.state is not None and credited.state.step == "propagandist"
    assert credited.state.influence == "regular"
    granted = [e.perk for e in credited.emitted if e.type == "perk.granted"]
    assert "referral_reward" in granted
    assert "priority_service" not in granted  # never habitual: no habitual perks on the way up
    # A second purchase of the friend is not a first purchase: no second credit.
    from tests.unit.loyalty_builders import purchase as buy

    again = evolve(friend, buy("f", 10), DEFAULT_POLICY)
    assert again.referrals == ()


def test_a_dissatisfied_customer_is_not_a_propagandist() -> None:
    complained_first = [purchase("c", 0), feedback("c", 1, complaint=True), feedback("c", 2, nps=10, public=True)]
    state, _ = run(complained_first)
    assert state is not None and state.satisfaction == "dissatisfied" and state.step == "buyer"
    # A propagandist who turns dissatisfied is demoted, after the grace period like any demotion.
    turned = [purchase("d", 0), feedback("d", 1, nps=10, public=True), feedback("d", 2, complaint=True)]
    state, _ = run(turned)
    assert state is not None and state.step == "propagandist" and state.satisfaction == "dissatisfied"
    later = sweep(state, at(40), DEFAULT_POLICY).state
    assert later is not None and later.step == "buyer"


@pytest.mark.parametrize(("days", "activity"), [(180, "active"), (181, "inactive")])
def test_inactive_after_more_than_180_days_without_buying(days: int, activity: str) -> None:
    state, _ = run([purchase("c", 0)])
    assert state is not None
    outcome = sweep(state, at(days + 0.6), DEFAULT_POLICY)  # a sweep at the first midnight after the moment
    assert outcome.state is not None and outcome.state.activity == activity
    perks = [e.perk for e in outcome.emitted if e.type == "perk.granted"]
    assert perks == (["win_back_offer"] if activity == "inactive" else [])


@pytest.mark.parametrize(
    ("purchases", "gap", "frequency"),
    [(1, 0, "occasional"), (4, 60, "habitual"), (5, 30, "habitual"), (6, 30, "frequent"), (6, 31, "habitual")],
)
def test_frequency(purchases: int, gap: float, frequency: str) -> None:
    state, _ = run(every_n_days("c", purchases, gap=gap or 1))
    assert state is not None and state.frequency == frequency


@pytest.mark.parametrize(("positives", "satisfaction"), [(11, "dissatisfied"), (12, "satisfied")])
def test_twelve_positive_experiences_make_up_for_one_negative(positives: int, satisfaction: str) -> None:
    events = [feedback("c", 0, csat=1)] + [feedback("c", 1 + i, csat=5) for i in range(positives)]
    state, _ = run(events)
    assert state is not None and state.satisfaction == satisfaction


@pytest.mark.parametrize(
    ("signals", "satisfaction"),
    [({"csat": 5}, "satisfied"), ({"csat": 5, "expectation": "exceeded"}, "delighted"), ({"nps": 7}, "unknown")],
)
def test_delighted_needs_a_score_of_12_and_a_delight_signal(signals: dict[str, object], satisfaction: str) -> None:
    state, _ = run([feedback("c", i, **signals) for i in range(12)])
    assert state is not None and state.satisfaction == satisfaction


@pytest.mark.parametrize(
    ("audience", "influence"), [(499, "none"), (500, "regular"), (9_999, "regular"), (10_000, "high")]
)
def test_influence_by_audience(audience: int, influence: str) -> None:
    state, _ = run([feedback("c", 0, channel="social", public=True, audience=audience, csat=4)])
    assert state is not None and state.influence == influence


@pytest.mark.parametrize(
    ("events", "relationship"),
    [
        ([*every_n_days("c", 4, gap=20), feedback("c", 61, csat=5)], "apostle"),
        ([purchase("c", 0), feedback("c", 1, csat=5)], "mercenary"),
        ([*every_n_days("c", 4, gap=20), feedback("c", 61, complaint=True)], "hostage"),
        ([purchase("c", 0), feedback("c", 1, complaint=True)], "enemy"),
        ([purchase("c", 0)], "unknown"),
    ],
)
def test_relationship_quadrant(events: list, relationship: str) -> None:  # type: ignore[type-arg]
    state, outcomes = run(events)
    assert state is not None and state.relationship == relationship
    perks = perks_of(outcomes)
    assert ("membership_offer" in perks) == (relationship == "mercenary")
    assert ("service_recovery" in perks) == (relationship in {"hostage", "enemy"})


def test_potential_by_interest_or_by_all_three_traits() -> None:
    state, _ = run([register("a", 0), interest("a", 1)])
    assert state is not None and state.step == "potential"
    traits = {"has_need": True, "can_afford": True, "can_decide": True}
    assert run([register("b", 0, traits=traits)])[0].step == "potential"  # type: ignore[union-attr]
    assert run([register("c", 0, traits={**traits, "can_decide": False})])[0].step == "possible"  # type: ignore[union-attr]


def test_at_risk_is_emitted_once_with_a_retention_offer() -> None:
    state, _ = run(every_n_days("c", 4, gap=20))  # median gap 20: at risk after 30 days
    assert state is not None
    outcome = sweep(state, at(60 + 29), DEFAULT_POLICY)
    assert outcome.state is not None and outcome.state.risk == "none"
    outcome = sweep(state, at(60 + 32), DEFAULT_POLICY)
    risk = [e for e in outcome.emitted if e.type == "customer.classification_changed" and e.dimension == "risk"]
    # Last purchase day 60 at 10:00; overdue when more than 30 whole days passed: the midnight after day 91 10:00.
    assert [(r.to_value, r.occurred_at) for r in risk] == [("at_risk", at(92).replace(hour=0))]
    assert [e.perk for e in outcome.emitted if e.type == "perk.granted"] == ["retention_offer"]
    again = sweep(outcome.state, at(60 + 50), DEFAULT_POLICY)  # type: ignore[arg-type]
    assert not [e for e in again.emitted if getattr(e, "dimension", None) == "risk"]


def test_demotion_waits_for_the_grace_period() -> None:
    state, _ = run(every_n_days("c", 4, gap=20))  # last purchase day 60; the first leaves the window on day 365
    assert state is not None and state.step == "habitual"
    before = sweep(state, at(365 + 30 - 1), DEFAULT_POLICY)
    assert before.state is not None and before.state.step == "habitual"
    after = sweep(state, at(365 + 31), DEFAULT_POLICY)
    assert after.state is not None and after.state.step == "occasional"
    change = next(e for e in after.emitted if e.type == "customer.step_changed")
    assert change.rule == "ladder.demotion" and change.evidence["grace_days"] == 30


def test_permanent_after_three_years_habitual() -> None:
    events = every_n_days("c", 4 + 3 * 365 // 20 + 2, gap=20)
    state, outcomes = run(events)
    assert state is not None and state.permanent
    assert "personal_attention" in perks_of(outcomes)


def test_volume_against_the_population() -> None:
    big, _ = run([purchase("big", 0, amount="900")])
    small, _ = run([purchase("small", 0, amount="10")])
    population = Population.compute(
        [Decimal(900), Decimal(10), Decimal(90)], DEFAULT_POLICY.classification.high_volume_share
    )
    assert population.high_volume_threshold == Decimal(900) and population.mean_spend == Decimal("333.33")
    assert sweep(big, at(1), DEFAULT_POLICY, population).state.volume == "high"  # type: ignore[arg-type, union-attr]
    assert sweep(small, at(1), DEFAULT_POLICY, population).state.volume == "low"  # type: ignore[arg-type, union-attr]


def test_amounts_are_converted_to_the_base_currency() -> None:
    state, _ = run([purchase("c", 0, amount="100", currency="USD")])
    assert state is not None and state.purchases[0][2] == Decimal("92.00")


def test_every_decision_is_explained_with_its_figures() -> None:
    _, outcomes = run([*every_n_days("c", 4, gap=20), feedback("c", 61, csat=5)])
    decisions = [e for o in outcomes for e in o.emitted]
    assert decisions
    for decision in decisions:
        assert decision.rule and decision.explanation and decision.evidence
        assert decision.policy_version == DEFAULT_POLICY.version


@given(
    days=st.integers(min_value=0, max_value=40_000),
    gap=st.floats(min_value=0, max_value=3650, allow_nan=False),
    factor=st.decimals(min_value="1.01", max_value=10, places=3),
)
def test_overdue_in_floats_decides_as_the_exact_decimal_product(days: int, gap: float, factor: Decimal) -> None:
    """The at-risk rule compares days with gap × factor in floats when they are clearly apart: as exactly as in
    decimals, also right at the boundary (days equal to the product, or a hair either side)."""
    policy = Policy(ladder=Ladder(at_risk_overdue_factor=factor))
    for candidate in (days, int(Decimal(str(gap)) * factor), int(Decimal(str(gap)) * factor) + 1):
        assert _beyond(candidate, gap, policy) == (candidate > _overdue(gap, policy))
