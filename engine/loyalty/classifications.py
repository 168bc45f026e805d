"""The dimensions computed alongside the step (seeds 000, 001, 002, 004).

Each rule is two functions: the rule itself gives the value (cheap: it runs on every event), and its `why_`
companion words that value with the figures behind it (run only when the value changes). The rule name of a
value is always `<dimension>.<value>`.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from engine.loyalty.figures import Figures
from engine.loyalty.ladder import STRONG_STEPS
from engine.loyalty.policy import Policy
from engine.loyalty.population import Population
from engine.loyalty.state import CustomerState
from schemas.events import Evidence

Why = tuple[str, Evidence]  # the decision in words, and the figures that decided it


def activity(f: Figures, policy: Policy) -> str:
    """Inactive when the last purchase is more than 180 days old (presumed gone to a competitor or unhappy)."""
    days = f.days_since_last_purchase
    if days is None:
        return "never"
    return "inactive" if days > policy.classification.inactive_after_days else "active"


def why_activity(value: str, f: Figures, policy: Policy) -> Why:
    """Words an activity value."""
    limit = policy.classification.inactive_after_days
    days = f.days_since_last_purchase
    if value == "never":
        return "Has never bought.", {"threshold_days": limit}
    evidence: Evidence = {"days_since_last_purchase": days, "threshold_days": limit}
    if value == "inactive":
        return f"No purchase for {days} days (a customer is inactive after {limit} days without buying).", evidence
    return f"Last purchase {days} days ago (within {limit}).", evidence


def frequency(f: Figures, policy: Policy) -> str:
    """Frequent: 6+ purchases at most 30 days apart; habitual: 4+ at most 60; occasional: any other purchase."""
    n, gap = f.purchases_in_window, f.median_gap_days
    if gap is not None:
        c, ladder = policy.classification, policy.ladder
        if n >= c.frequent_min_purchases and gap <= c.frequent_max_median_gap_days:
            return "frequent"
        if n >= ladder.habitual_min_purchases and gap <= ladder.habitual_max_median_gap_days:
            return "habitual"
    return "occasional" if n >= 1 else "none"


def why_frequency(value: str, f: Figures, policy: Policy) -> Why:
    """Words a frequency value."""
    c, ladder = policy.classification, policy.ladder
    n, gap = f.purchases_in_window, f.median_gap_days
    evidence: Evidence = {"purchases_in_window": n, "median_gap_days": None if gap is None else f"{gap:.1f}"}
    if value == "frequent":
        text = (
            f"{n} purchases, {gap:.1f} days apart at the median (frequent: {c.frequent_min_purchases}+ "
            f"at most {c.frequent_max_median_gap_days} days apart)."
        )
    elif value == "habitual":
        text = (
            f"{n} purchases, {gap:.1f} days apart at the median (habitual: {ladder.habitual_min_purchases}+ "
            f"at most {ladder.habitual_max_median_gap_days} days apart)."
        )
    elif value == "occasional":
        text = f"{n} purchase(s) in the window."
    else:
        text = "No purchase in the window."
    return text, evidence


def volume(f: Figures, population: Population) -> str:
    """High: among the top spenders who make 80% of all spend; low: below the mean; medium: the rest."""
    return volume_of(f.window_spend, population)


def volume_of(spend: Decimal, population: Population) -> str:
    """`volume` of a window spend."""
    if spend <= 0:
        return "none"
    if population.customers and spend >= population.high_volume_threshold:
        return "high"
    return "low" if spend < population.mean_spend else "medium"


def why_volume(value: str, f: Figures, population: Population) -> Why:
    """Words a volume value."""
    return why_volume_of(value, f.window_spend, population)


def why_volume_of(value: str, spend: Decimal, population: Population) -> Why:
    """`why_volume` of a window spend."""
    mean = population.mean_spend
    evidence: Evidence = {
        "window_spend": str(spend),
        "high_volume_threshold": str(population.high_volume_threshold),
        "mean_spend": str(mean),
        "customers_compared": population.customers,
    }
    if value == "none":
        text = "No spend in the window."
    elif value == "high":
        text = f"Spent {spend:.2f} in the window: among the top spenders who make most of all spend."
    elif value == "low":
        text = f"Spent {spend:.2f}, below the mean of {mean:.2f}."
    else:
        text = f"Spent {spend:.2f}: at or above the mean of {mean:.2f}, below the top spenders."
    return text, evidence


def satisfaction(f: Figures, policy: Policy) -> str:
    """Score = positives − 12 × negatives: below 0 dissatisfied; 12+ with a delight signal delighted."""
    if f.positives == 0 and f.negatives == 0:
        return "unknown"
    score = f.satisfaction_score(policy)
    if score < 0:
        return "dissatisfied"
    if score >= policy.classification.delighted_min_score and f.delight_signal:
        return "delighted"
    return "satisfied"


def why_satisfaction(value: str, f: Figures, policy: Policy) -> Why:
    """Words a satisfaction value."""
    weight = policy.classification.negative_weight
    score = f.satisfaction_score(policy)
    evidence: Evidence = {
        "positives": f.positives,
        "negatives": f.negatives,
        "negative_weight": weight,
        "score": score,
        "delight_signal": f.delight_signal,
    }
    formula = f"{f.positives} positive − {weight} × {f.negatives} negative = {score}"
    if value == "unknown":
        text = "No positive or negative experience in the window."
    elif value == "dissatisfied":
        text = f"{formula}: one bad experience needs {weight} good ones to make up for it."
    elif value == "delighted":
        text = f"{formula}, with expectations exceeded or a top NPS."
    else:
        text = f"{formula}."
    return text, evidence


def influence(state: CustomerState, policy: Policy) -> str:
    """High: audience 10,000+ or 5+ converted referrals; regular: audience 500+ or a converted referral."""
    c = policy.classification
    audience, referrals = state.audience, state.converted_referrals
    if audience >= c.high_influence_audience or referrals >= c.high_influence_referrals:
        return "high"
    if audience >= c.regular_influence_audience or referrals >= c.regular_influence_referrals:
        return "regular"
    return "none"


def why_influence(value: str, state: CustomerState, policy: Policy) -> Why:
    """Words an influence value."""
    c = policy.classification
    audience, referrals = state.audience, state.converted_referrals
    evidence: Evidence = {"audience": audience, "converted_referrals": referrals}
    reach = f"Reaches {audience} people and converted {referrals} referral(s)"
    if value == "high":
        text = f"{reach} (high: {c.high_influence_audience}+ or {c.high_influence_referrals}+ referrals)."
    elif value == "regular":
        text = f"{reach} (regular: {c.regular_influence_audience}+ or {c.regular_influence_referrals}+ referral)."
    else:
        text = f"Reaches {audience} people, no converted referral."
    return text, evidence


_QUADRANT = {(True, True): "apostle", (True, False): "mercenary", (False, True): "hostage", (False, False): "enemy"}
_MEANING = {
    "apostle": "satisfied and bound to us: an apostle",
    "mercenary": "satisfied but weakly bound: leaves for any better offer",
    "hostage": "dissatisfied but bound to us: a hostage",
    "enemy": "dissatisfied and weakly bound: an enemy",
}


def relationship(step: str, satisfied: str) -> str:
    """Satisfaction × bond (seed 002): the bond is strong from habitual up."""
    if satisfied == "unknown":
        return "unknown"
    return _QUADRANT[(satisfied == "satisfied" or satisfied == "delighted", step in STRONG_STEPS)]


def why_relationship(value: str, step: str, satisfied: str) -> Why:
    """Words a relationship value."""
    strong = step in STRONG_STEPS
    evidence: Evidence = {"satisfaction": satisfied, "step": step, "strong_bond": strong}
    if value == "unknown":
        return "Satisfaction is not known yet.", evidence
    bond = "strong" if strong else "weak"
    return f"{satisfied.capitalize()} with a {bond} bond: {_MEANING[value]}.", evidence


def permanence(state: CustomerState, at: datetime, policy: Policy) -> str:
    """Permanent: habitual or above for 3 years or more; expects to be known by name."""
    since = state.strong_since
    return "true" if since is not None and at - since >= policy.spans.permanent else "false"


def why_permanence(value: str, state: CustomerState, at: datetime, policy: Policy) -> Why:
    """Words a permanence value."""
    days = policy.classification.permanent_after_days
    since = state.strong_since
    held = 0 if since is None else int((at - since).total_seconds() // 86_400)
    evidence: Evidence = {"days_habitual_or_above": held, "threshold_days": days}
    if value == "true":
        return f"Habitual or above for {held} days (permanent after {days}): expects personal attention.", evidence
    return f"Habitual or above for {held} of {days} days.", evidence


_HABITUAL = frozenset({"habitual", "exclusive"})


def risk(step: str, f: Figures, policy: Policy) -> str:
    """At risk: a habitual or exclusive customer whose next purchase is overdue by 1.5 × their median gap."""
    gap, since = f.median_gap_days, f.days_since_last_purchase
    if step in _HABITUAL and gap is not None and since is not None and _beyond(since, gap, policy):
        return "at_risk"
    return "none"


def why_risk(value: str, step: str, f: Figures, policy: Policy) -> Why:
    """Words a risk value."""
    gap, since = f.median_gap_days, f.days_since_last_purchase
    evidence: Evidence = {
        "days_since_last_purchase": since,
        "median_gap_days": None if gap is None else f"{gap:.1f}",
        "overdue_factor": str(policy.ladder.at_risk_overdue_factor),
    }
    if value == "at_risk" and gap is not None:
        beyond = _overdue(gap, policy)
        text = f"No purchase for {since} days; usually buys every {gap:.1f} (at risk beyond {beyond:.1f})."
    elif step in _HABITUAL:
        text = "Buying on their usual rhythm."
    else:
        text = f"Not a habitual buyer ({step}): no rhythm to fall behind."
    return text, evidence


def _beyond(days: int, gap: float, policy: Policy) -> bool:
    """`days > _overdue(gap, policy)`, told apart in floats when they are clearly apart (a float's error on a product
    of at most 3,650 days and a factor of at most 10 is under a billionth of a day), exactly otherwise."""
    rough = gap * policy.overdue_factor
    if days > rough + _MARGIN:
        return True
    if days < rough - _MARGIN:
        return False
    return days > _overdue(gap, policy)


_MARGIN = 1e-6


def _overdue(gap: float, policy: Policy) -> Decimal:
    """How many days without a purchase put a habitual buyer at risk (exact decimal arithmetic)."""
    return Decimal(str(gap)) * policy.ladder.at_risk_overdue_factor
