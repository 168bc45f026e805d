"""The seven-step ladder (seed 003): a customer's step is the highest step whose rule holds."""

from __future__ import annotations

from dataclasses import dataclass

from engine.loyalty.figures import Figures
from engine.loyalty.policy import Policy
from engine.loyalty.state import CustomerState
from schemas.events import STEPS, Evidence

RANK: dict[str, int] = {step: position for position, step in enumerate(STEPS)}


@dataclass(frozen=True, slots=True)
class StepVerdict:
    """The step the rules give, and why."""

    step: str
    rule: str
    explanation: str
    evidence: Evidence
    base: str = ""  # the step by purchases alone (propagandist aside): crossed steps up to it really hold


def rank(step: str) -> int:
    """Position on the ladder: possible is 0, propagandist 6."""
    return RANK[step]


def step_for(state: CustomerState, f: Figures, satisfaction: str, policy: Policy) -> StepVerdict:
    """The highest step whose rule holds for these figures."""
    p = policy.ladder
    base = _base_step(state, f, policy)
    referrals_ok = state.converted_referrals >= p.propagandist_min_referrals
    voice_ok = f.top_nps and f.public_positive
    if rank(base.step) >= rank("buyer") and (referrals_ok or voice_ok) and satisfaction != "dissatisfied":
        why = (
            f"{state.converted_referrals} converted referral(s)"
            if referrals_ok
            else f"an NPS of {p.propagandist_min_nps}+ and a public positive review"
        )
        return StepVerdict(
            "propagandist",
            "ladder.propagandist",
            f"Recommends us: {why}, is a {base.step} and is not dissatisfied.",
            {
                "converted_referrals": state.converted_referrals,
                "min_referrals": p.propagandist_min_referrals,
                "top_nps_in_window": f.top_nps,
                "public_positive_review": f.public_positive,
                "satisfaction": satisfaction,
                "step_without_advocacy": base.step,
            },
            base=base.step,
        )
    return base


def _base_step(state: CustomerState, f: Figures, policy: Policy) -> StepVerdict:
    verdict = _purchase_step(state, f, policy)
    return StepVerdict(verdict.step, verdict.rule, verdict.explanation, verdict.evidence, verdict.step)


def _purchase_step(state: CustomerState, f: Figures, policy: Policy) -> StepVerdict:
    p = policy.ladder
    n, gap, days = f.purchases_in_window, f.median_gap_days, p.window_days
    habitual = n >= p.habitual_min_purchases and gap is not None and gap <= p.habitual_max_median_gap_days
    gap_text = "n/a" if gap is None else f"{gap:.1f}"
    common: Evidence = {"purchases_in_window": n, "window_days": days, "median_gap_days": gap_text}
    if habitual:
        share = state.share_of_wallet
        if share is not None and share >= p.exclusive_min_share_of_wallet:
            return StepVerdict(
                "exclusive",
                "ladder.exclusive",
                f"Habitual buyer who makes {share:.0%} of these purchases with us "
                f"(exclusive needs {p.exclusive_min_share_of_wallet:.0%}).",
                {**common, "share_of_wallet": str(share), "min_share": str(p.exclusive_min_share_of_wallet)},
            )
        return StepVerdict(
            "habitual",
            "ladder.habitual",
            f"Bought {n} times in the last {days} days, every {gap_text} days at the median (habitual needs "
            f"{p.habitual_min_purchases} purchases at most {p.habitual_max_median_gap_days} days apart).",
            {
                **common,
                "min_purchases": p.habitual_min_purchases,
                "max_median_gap_days": p.habitual_max_median_gap_days,
                "share_of_wallet": None if share is None else str(share),
            },
        )
    if n >= p.occasional_min_purchases:
        return StepVerdict(
            "occasional",
            "ladder.occasional",
            f"Bought {n} times in the last {days} days (occasional needs {p.occasional_min_purchases}; habitual "
            f"needs {p.habitual_min_purchases} at most {p.habitual_max_median_gap_days} days apart).",
            {**common, "min_purchases": p.occasional_min_purchases},
        )
    if n >= 1:
        return StepVerdict(
            "buyer",
            "ladder.buyer",
            f"Made a purchase in the last {days} days that was not fully refunded.",
            {**common, "min_purchases": 1},
        )
    traits = state.has_need and state.can_afford and state.can_decide
    if f.interest_in_window or traits:
        why = "showed interest" if f.interest_in_window else "has the need, the means and the authority to buy"
        return StepVerdict(
            "potential",
            "ladder.potential",
            f"Has not bought in the last {days} days but {why}.",
            {
                **common,
                "interest_in_window": f.interest_in_window,
                "has_need": state.has_need,
                "can_afford": state.can_afford,
                "can_decide": state.can_decide,
            },
        )
    return StepVerdict(
        "possible",
        "ladder.possible",
        f"Known to us, with no purchase or interest in the last {days} days.",
        {**common, "interest_in_window": False},
    )
