"""The seven-step ladder (seed 003): a customer's step is the highest step whose rule holds."""

from __future__ import annotations

from engine.loyalty.figures import Figures
from engine.loyalty.policy import Policy
from engine.loyalty.state import CustomerState
from schemas.events import STEPS, Evidence

RANK: dict[str, int] = {step: position for position, step in enumerate(STEPS)}  # possible 0 … propagandist 6
STRONG_STEPS = frozenset(STEPS[RANK["habitual"] :])
"""The steps with a strong bond (seed 002): habitual and above."""


def step_for(state: CustomerState, f: Figures, satisfaction: str, policy: Policy) -> tuple[str, str]:
    """The highest step whose rule holds, and the step by purchases and interest alone (the base).

    Crossed steps up to the base really hold; a propagandist's steps between the base and the top do not.
    """
    base = _base_step(state, f, policy)
    if RANK[base] < 2 or satisfaction == "dissatisfied":  # below buyer, or dissatisfied: no propagandist
        return base, base
    if state.converted_referrals >= policy.ladder.propagandist_min_referrals or (f.top_nps and f.public_positive):
        return "propagandist", base
    return base, base


def _base_step(state: CustomerState, f: Figures, policy: Policy) -> str:
    p = policy.ladder
    n, gap = f.purchases_in_window, f.median_gap_days
    if n >= p.habitual_min_purchases and gap is not None and gap <= p.habitual_max_median_gap_days:
        share = state.share_of_wallet
        return "exclusive" if share is not None and share >= p.exclusive_min_share_of_wallet else "habitual"
    if n >= p.occasional_min_purchases:
        return "occasional"
    if n >= 1:
        return "buyer"
    if f.interest_in_window or (state.has_need and state.can_afford and state.can_decide):
        return "potential"
    return "possible"


def why_step(
    step: str, base: str, state: CustomerState, f: Figures, satisfaction: str, policy: Policy
) -> tuple[str, Evidence]:
    """Words the step `step_for` gave: what holds, with the figures and thresholds."""
    p = policy.ladder
    if step == "propagandist":
        referrals_ok = state.converted_referrals >= p.propagandist_min_referrals
        why = (
            f"{state.converted_referrals} converted referral(s)"
            if referrals_ok
            else f"an NPS of {p.propagandist_min_nps}+ and a public positive review"
        )
        return f"Recommends us: {why}, is a {base} and is not dissatisfied.", {
            "converted_referrals": state.converted_referrals,
            "min_referrals": p.propagandist_min_referrals,
            "top_nps_in_window": f.top_nps,
            "public_positive_review": f.public_positive,
            "satisfaction": satisfaction,
            "step_without_advocacy": base,
        }
    n, gap, days = f.purchases_in_window, f.median_gap_days, p.window_days
    gap_text = "n/a" if gap is None else f"{gap:.1f}"
    common: Evidence = {"purchases_in_window": n, "window_days": days, "median_gap_days": gap_text}
    share = state.share_of_wallet
    if step == "exclusive" and share is not None:
        return (
            f"Habitual buyer who makes {share:.0%} of these purchases with us "
            f"(exclusive needs {p.exclusive_min_share_of_wallet:.0%}).",
            {**common, "share_of_wallet": str(share), "min_share": str(p.exclusive_min_share_of_wallet)},
        )
    if step == "habitual":
        return (
            f"Bought {n} times in the last {days} days, every {gap_text} days at the median (habitual needs "
            f"{p.habitual_min_purchases} purchases at most {p.habitual_max_median_gap_days} days apart).",
            {
                **common,
                "min_purchases": p.habitual_min_purchases,
                "max_median_gap_days": p.habitual_max_median_gap_days,
                "share_of_wallet": None if share is None else str(share),
            },
        )
    if step == "occasional":
        return (
            f"Bought {n} times in the last {days} days (occasional needs {p.occasional_min_purchases}; habitual "
            f"needs {p.habitual_min_purchases} at most {p.habitual_max_median_gap_days} days apart).",
            {**common, "min_purchases": p.occasional_min_purchases},
        )
    if step == "buyer":
        return f"Made a purchase in the last {days} days that was not fully refunded.", {**common, "min_purchases": 1}
    if step == "potential":
        why = "showed interest" if f.interest_in_window else "has the need, the means and the authority to buy"
        return f"Has not bought in the last {days} days but {why}.", {
            **common,
            "interest_in_window": f.interest_in_window,
            "has_need": state.has_need,
            "can_afford": state.can_afford,
            "can_decide": state.can_decide,
        }
    text = f"Known to us, with no purchase or interest in the last {days} days."
    return text, {**common, "interest_in_window": False}
