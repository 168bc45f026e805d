"""The dimensions computed alongside the step (seeds 000, 001, 002, 004)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal

from engine.loyalty.figures import Figures
from engine.loyalty.ladder import rank
from engine.loyalty.policy import Policy
from engine.loyalty.population import Population
from engine.loyalty.state import CustomerState
from schemas.events import Evidence


class Verdict:
    """A dimension's value, the rule that gave it, and why (the why is only worded when it is needed)."""

    __slots__ = ("_explain", "_why", "rule", "value")

    def __init__(self, value: str, rule: str, explain: Callable[[], tuple[str, Evidence]]) -> None:
        self.value, self.rule, self._explain = value, rule, explain
        self._why: tuple[str, Evidence] | None = None

    def _worded(self) -> tuple[str, Evidence]:
        if self._why is None:
            self._why = self._explain()
        return self._why

    @property
    def explanation(self) -> str:
        """The decision in words a marketer can read."""
        return self._worded()[0]

    @property
    def evidence(self) -> Evidence:
        """The figures that decided it, with their thresholds."""
        return self._worded()[1]

    @property
    def call(self) -> tuple[str, str, Evidence]:
        """Rule, explanation and evidence: what a perk triggered by this verdict carries."""
        return self.rule, self.explanation, self.evidence


def activity(f: Figures, policy: Policy) -> Verdict:
    """Inactive when the last purchase is more than 180 days old (presumed gone to a competitor or unhappy)."""
    limit = policy.classification.inactive_after_days
    days = f.days_since_last_purchase
    if days is None:
        return Verdict("never", "activity.never", lambda: ("Has never bought.", {"threshold_days": limit}))
    evidence: Evidence = {"days_since_last_purchase": days, "threshold_days": limit}
    if days > limit:
        text = f"No purchase for {days} days (a customer is inactive after {limit} days without buying)."
        return Verdict("inactive", "activity.inactive", lambda: (text, evidence))
    return Verdict("active", "activity.active", lambda: (f"Last purchase {days} days ago (within {limit}).", evidence))


def frequency(f: Figures, policy: Policy) -> Verdict:
    """Frequent: 6+ purchases at most 30 days apart; habitual: 4+ at most 60; occasional: any other purchase."""
    c, ladder = policy.classification, policy.ladder
    n, gap = f.purchases_in_window, f.median_gap_days

    def why(text: str) -> Callable[[], tuple[str, Evidence]]:
        return lambda: (text, {"purchases_in_window": n, "median_gap_days": None if gap is None else f"{gap:.1f}"})

    if gap is not None and n >= c.frequent_min_purchases and gap <= c.frequent_max_median_gap_days:
        text = f"{n} purchases, {gap:.1f} days apart at the median (frequent: {c.frequent_min_purchases}+ "
        return Verdict(
            "frequent", "frequency.frequent", why(text + f"at most {c.frequent_max_median_gap_days} days apart).")
        )
    if gap is not None and n >= ladder.habitual_min_purchases and gap <= ladder.habitual_max_median_gap_days:
        text = f"{n} purchases, {gap:.1f} days apart at the median (habitual: {ladder.habitual_min_purchases}+ "
        return Verdict(
            "habitual", "frequency.habitual", why(text + f"at most {ladder.habitual_max_median_gap_days} days apart).")
        )
    if n >= 1:
        return Verdict("occasional", "frequency.occasional", why(f"{n} purchase(s) in the window."))
    return Verdict("none", "frequency.none", why("No purchase in the window."))


def volume(f: Figures, population: Population) -> Verdict:
    """High: among the top spenders who make 80% of all spend; low: below the mean; medium: the rest."""
    spend = f.window_spend

    def why(text: str) -> Callable[[], tuple[str, Evidence]]:
        evidence: Evidence = {
            "window_spend": str(spend),
            "high_volume_threshold": str(population.high_volume_threshold),
            "mean_spend": str(population.mean_spend),
            "customers_compared": population.customers,
        }
        return lambda: (text, evidence)

    if spend <= 0:
        return Verdict("none", "volume.none", why("No spend in the window."))
    if population.customers and spend >= population.high_volume_threshold:
        text = f"Spent {spend:.2f} in the window: among the top spenders who make most of all spend."
        return Verdict("high", "volume.high", why(text))
    if spend < population.mean_spend:
        return Verdict("low", "volume.low", why(f"Spent {spend:.2f}, below the mean of {population.mean_spend:.2f}."))
    text = f"Spent {spend:.2f}: at or above the mean of {population.mean_spend:.2f}, below the top spenders."
    return Verdict("medium", "volume.medium", why(text))


def satisfaction(f: Figures, policy: Policy) -> Verdict:
    """Score = positives − 12 × negatives: below 0 dissatisfied; 12+ with a delight signal delighted."""
    c = policy.classification
    score = f.satisfaction_score(policy)

    def why(text: str) -> Callable[[], tuple[str, Evidence]]:
        evidence: Evidence = {
            "positives": f.positives,
            "negatives": f.negatives,
            "negative_weight": c.negative_weight,
            "score": score,
            "delight_signal": f.delight_signal,
        }
        return lambda: (text, evidence)

    if f.positives == 0 and f.negatives == 0:
        return Verdict("unknown", "satisfaction.unknown", why("No positive or negative experience in the window."))
    formula = f"{f.positives} positive − {c.negative_weight} × {f.negatives} negative = {score}"
    if score < 0:
        text = f"{formula}: one bad experience needs {c.negative_weight} good ones to make up for it."
        return Verdict("dissatisfied", "satisfaction.dissatisfied", why(text))
    if score >= c.delighted_min_score and f.delight_signal:
        return Verdict(
            "delighted", "satisfaction.delighted", why(f"{formula}, with expectations exceeded or a top NPS.")
        )
    return Verdict("satisfied", "satisfaction.satisfied", why(f"{formula}."))


def influence(state: CustomerState, policy: Policy) -> Verdict:
    """High: audience 10,000+ or 5+ converted referrals; regular: audience 500+ or a converted referral."""
    c = policy.classification
    audience, referrals = state.audience, state.converted_referrals

    def why(text: str) -> Callable[[], tuple[str, Evidence]]:
        return lambda: (text, {"audience": audience, "converted_referrals": referrals})

    reach = f"Reaches {audience} people and converted {referrals} referral(s)"
    if audience >= c.high_influence_audience or referrals >= c.high_influence_referrals:
        text = f"{reach} (high: {c.high_influence_audience}+ or {c.high_influence_referrals}+ referrals)."
        return Verdict("high", "influence.high", why(text))
    if audience >= c.regular_influence_audience or referrals >= c.regular_influence_referrals:
        text = f"{reach} (regular: {c.regular_influence_audience}+ or {c.regular_influence_referrals}+ referral)."
        return Verdict("regular", "influence.regular", why(text))
    return Verdict("none", "influence.none", why(f"Reaches {audience} people, no converted referral."))


_QUADRANT = {(True, True): "apostle", (True, False): "mercenary", (False, True): "hostage", (False, False): "enemy"}
_MEANING = {
    "apostle": "satisfied and bound to us: an apostle",
    "mercenary": "satisfied but weakly bound: leaves for any better offer",
    "hostage": "dissatisfied but bound to us: a hostage",
    "enemy": "dissatisfied and weakly bound: an enemy",
}


def relationship(step: str, satisfied: str) -> Verdict:
    """Satisfaction × bond (seed 002): the bond is strong from habitual up."""
    strong = rank(step) >= rank("habitual")

    def why(text: str) -> Callable[[], tuple[str, Evidence]]:
        return lambda: (text, {"satisfaction": satisfied, "step": step, "strong_bond": strong})

    if satisfied == "unknown":
        return Verdict("unknown", "relationship.unknown", why("Satisfaction is not known yet."))
    value = _QUADRANT[(satisfied in {"satisfied", "delighted"}, strong)]
    bond = "strong" if strong else "weak"
    text = f"{satisfied.capitalize()} with a {bond} bond: {_MEANING[value]}."
    return Verdict(value, f"relationship.{value}", why(text))


def permanence(state: CustomerState, at: datetime, policy: Policy) -> Verdict:
    """Permanent: habitual or above for 3 years or more; expects to be known by name."""
    days = policy.classification.permanent_after_days
    since = state.strong_since
    held = 0 if since is None else int((at - since).total_seconds() // 86_400)

    def why(text: str) -> Callable[[], tuple[str, Evidence]]:
        return lambda: (text, {"days_habitual_or_above": held, "threshold_days": days})

    if since is not None and at - since >= timedelta(days=days):
        text = f"Habitual or above for {held} days (permanent after {days}): expects personal attention."
        return Verdict("true", "permanent.true", why(text))
    return Verdict("false", "permanent.false", why(f"Habitual or above for {held} of {days} days."))


def risk(step: str, f: Figures, policy: Policy) -> Verdict:
    """At risk: a habitual or exclusive customer whose next purchase is overdue by 1.5 × their median gap."""
    factor = policy.ladder.at_risk_overdue_factor
    gap, since = f.median_gap_days, f.days_since_last_purchase

    def why(text: str) -> Callable[[], tuple[str, Evidence]]:
        evidence: Evidence = {
            "days_since_last_purchase": since,
            "median_gap_days": None if gap is None else f"{gap:.1f}",
            "overdue_factor": str(factor),
        }
        return lambda: (text, evidence)

    habitual = step in {"habitual", "exclusive"}
    if habitual and gap is not None and since is not None:
        limit = Decimal(str(gap)) * factor
        if since > limit:
            text = f"No purchase for {since} days; usually buys every {gap:.1f} (at risk beyond {limit:.1f})."
            return Verdict("at_risk", "risk.at_risk", why(text))
    if habitual:
        return Verdict("none", "risk.none", why("Buying on their usual rhythm."))
    return Verdict("none", "risk.none", why(f"Not a habitual buyer ({step}): no rhythm to fall behind."))
