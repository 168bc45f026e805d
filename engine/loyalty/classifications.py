"""The dimensions computed alongside the step (seeds 000, 001, 002, 004)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from engine.loyalty.figures import Figures
from engine.loyalty.ladder import rank
from engine.loyalty.policy import Policy
from engine.loyalty.population import Population
from engine.loyalty.state import CustomerState
from schemas.events import Evidence


@dataclass(frozen=True, slots=True)
class Verdict:
    """A dimension's value, the rule that gave it, and why."""

    value: str
    rule: str
    explanation: str
    evidence: Evidence

    @property
    def call(self) -> tuple[str, str, Evidence]:
        """Rule, explanation and evidence: what a perk triggered by this verdict carries."""
        return self.rule, self.explanation, self.evidence


def activity(f: Figures, policy: Policy) -> Verdict:
    """Inactive when the last purchase is more than 180 days old (presumed gone to a competitor or unhappy)."""
    limit = policy.classification.inactive_after_days
    days = f.days_since_last_purchase
    if days is None:
        return Verdict("never", "activity.never", "Has never bought.", {"threshold_days": limit})
    evidence: Evidence = {"days_since_last_purchase": days, "threshold_days": limit}
    if days > limit:
        return Verdict(
            "inactive",
            "activity.inactive",
            f"No purchase for {days} days (a customer is inactive after {limit} days without buying).",
            evidence,
        )
    return Verdict("active", "activity.active", f"Last purchase {days} days ago (within {limit}).", evidence)


def frequency(f: Figures, policy: Policy) -> Verdict:
    """Frequent: 6+ purchases at most 30 days apart; habitual: 4+ at most 60; occasional: any other purchase."""
    c, ladder = policy.classification, policy.ladder
    n, gap = f.purchases_in_window, f.median_gap_days
    evidence: Evidence = {"purchases_in_window": n, "median_gap_days": None if gap is None else f"{gap:.1f}"}
    if gap is not None and n >= c.frequent_min_purchases and gap <= c.frequent_max_median_gap_days:
        text = f"{n} purchases, {gap:.1f} days apart at the median (frequent: {c.frequent_min_purchases}+ "
        text += f"at most {c.frequent_max_median_gap_days} days apart)."
        return Verdict("frequent", "frequency.frequent", text, evidence)
    if gap is not None and n >= ladder.habitual_min_purchases and gap <= ladder.habitual_max_median_gap_days:
        text = f"{n} purchases, {gap:.1f} days apart at the median (habitual: {ladder.habitual_min_purchases}+ "
        text += f"at most {ladder.habitual_max_median_gap_days} days apart)."
        return Verdict("habitual", "frequency.habitual", text, evidence)
    if n >= 1:
        return Verdict("occasional", "frequency.occasional", f"{n} purchase(s) in the window.", evidence)
    return Verdict("none", "frequency.none", "No purchase in the window.", evidence)


def volume(f: Figures, population: Population) -> Verdict:
    """High: among the top spenders who make 80% of all spend; low: below the mean; medium: the rest."""
    spend = f.window_spend
    evidence: Evidence = {
        "window_spend": str(spend),
        "high_volume_threshold": str(population.high_volume_threshold),
        "mean_spend": str(population.mean_spend),
        "customers_compared": population.customers,
    }
    if spend <= 0:
        return Verdict("none", "volume.none", "No spend in the window.", evidence)
    if population.customers and spend >= population.high_volume_threshold:
        text = f"Spent {spend:.2f} in the window: among the top spenders who make most of all spend."
        return Verdict("high", "volume.high", text, evidence)
    if spend < population.mean_spend:
        text = f"Spent {spend:.2f}, below the mean of {population.mean_spend:.2f}."
        return Verdict("low", "volume.low", text, evidence)
    text = f"Spent {spend:.2f}: at or above the mean of {population.mean_spend:.2f}, below the top spenders."
    return Verdict("medium", "volume.medium", text, evidence)


def satisfaction(f: Figures, policy: Policy) -> Verdict:
    """Score = positives − 12 × negatives: below 0 dissatisfied; 12+ with a delight signal delighted."""
    c = policy.classification
    score = f.satisfaction_score(policy)
    evidence: Evidence = {
        "positives": f.positives,
        "negatives": f.negatives,
        "negative_weight": c.negative_weight,
        "score": score,
        "delight_signal": f.delight_signal,
    }
    if f.positives == 0 and f.negatives == 0:
        return Verdict("unknown", "satisfaction.unknown", "No positive or negative experience in the window.", evidence)
    formula = f"{f.positives} positive − {c.negative_weight} × {f.negatives} negative = {score}"
    if score < 0:
        text = f"{formula}: one bad experience needs {c.negative_weight} good ones to make up for it."
        return Verdict("dissatisfied", "satisfaction.dissatisfied", text, evidence)
    if score >= c.delighted_min_score and f.delight_signal:
        text = f"{formula}, with expectations exceeded or a top NPS."
        return Verdict("delighted", "satisfaction.delighted", text, evidence)
    return Verdict("satisfied", "satisfaction.satisfied", f"{formula}.", evidence)


def influence(state: CustomerState, policy: Policy) -> Verdict:
    """High: audience 10,000+ or 5+ converted referrals; regular: audience 500+ or a converted referral."""
    c = policy.classification
    audience, referrals = state.audience, state.converted_referrals
    evidence: Evidence = {"audience": audience, "converted_referrals": referrals}
    if audience >= c.high_influence_audience or referrals >= c.high_influence_referrals:
        text = f"Reaches {audience} people and converted {referrals} referral(s) (high: {c.high_influence_audience}"
        text += f"+ or {c.high_influence_referrals}+ referrals)."
        return Verdict("high", "influence.high", text, evidence)
    if audience >= c.regular_influence_audience or referrals >= c.regular_influence_referrals:
        text = f"Reaches {audience} people and converted {referrals} referral(s) (regular: "
        text += f"{c.regular_influence_audience}+ or {c.regular_influence_referrals}+ referral)."
        return Verdict("regular", "influence.regular", text, evidence)
    return Verdict("none", "influence.none", f"Reaches {audience} people, no converted referral.", evidence)


def relationship(step: str, satisfied: str) -> Verdict:
    """Satisfaction × bond (seed 002): the bond is strong from habitual up."""
    strong = rank(step) >= rank("habitual")
    evidence: Evidence = {"satisfaction": satisfied, "step": step, "strong_bond": strong}
    bond = "strong" if strong else "weak"
    if satisfied == "unknown":
        return Verdict("unknown", "relationship.unknown", "Satisfaction is not known yet.", evidence)
    happy = satisfied in {"satisfied", "delighted"}
    value = {
        (True, True): "apostle",
        (True, False): "mercenary",
        (False, True): "hostage",
        (False, False): "enemy",
    }[(happy, strong)]
    meaning = {
        "apostle": "satisfied and bound to us: an apostle",
        "mercenary": "satisfied but weakly bound: leaves for any better offer",
        "hostage": "dissatisfied but bound to us: a hostage",
        "enemy": "dissatisfied and weakly bound: an enemy",
    }[value]
    return Verdict(value, f"relationship.{value}", f"{satisfied.capitalize()} with a {bond} bond: {meaning}.", evidence)


def permanence(state: CustomerState, at: datetime, policy: Policy) -> Verdict:
    """Permanent: habitual or above for 3 years or more; expects to be known by name."""
    days = policy.classification.permanent_after_days
    since = state.strong_since
    held = 0 if since is None else int((at - since).total_seconds() // 86_400)
    evidence: Evidence = {"days_habitual_or_above": held, "threshold_days": days}
    if since is not None and at - since >= timedelta(days=days):
        text = f"Habitual or above for {held} days (permanent after {days}): expects personal attention."
        return Verdict("true", "permanent.true", text, evidence)
    return Verdict("false", "permanent.false", f"Habitual or above for {held} of {days} days.", evidence)


def risk(step: str, f: Figures, policy: Policy) -> Verdict:
    """At risk: a habitual or exclusive customer whose next purchase is overdue by 1.5 × their median gap."""
    factor = policy.ladder.at_risk_overdue_factor
    gap, since = f.median_gap_days, f.days_since_last_purchase
    evidence: Evidence = {
        "days_since_last_purchase": since,
        "median_gap_days": None if gap is None else f"{gap:.1f}",
        "overdue_factor": str(factor),
    }
    if step in {"habitual", "exclusive"} and gap is not None and since is not None:
        limit = Decimal(str(gap)) * factor
        if since > limit:
            text = f"No purchase for {since} days; usually buys every {gap:.1f} (at risk beyond {limit:.1f})."
            return Verdict("at_risk", "risk.at_risk", text, evidence)
    if step in {"habitual", "exclusive"}:
        return Verdict("none", "risk.none", "Buying on their usual rhythm.", evidence)
    return Verdict("none", "risk.none", f"Not a habitual buyer ({step}): no rhythm to fall behind.", evidence)
