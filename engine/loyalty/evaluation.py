"""Apply every rule at one moment: change what changed, explain it, and offer the perks it triggers."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from engine.loyalty import classifications as rules
from engine.loyalty.figures import Figures, figures
from engine.loyalty.ladder import rank, step_for
from engine.loyalty.outcome import Recorder
from engine.loyalty.perks import ON_ENTERING, SuppressedPerk, offer
from engine.loyalty.policy import Policy
from engine.loyalty.population import Population
from engine.loyalty.state import CustomerState
from schemas.events import STEPS, ClassificationChanged, Dimension, Evidence, PerkType, StepChanged

MAX_DECISIONS = 10


def evaluate(state: CustomerState, at: datetime, caused_by: str, policy: Policy, out: Recorder) -> None:
    """Run the ladder and the classifications at `at` (not volume: it needs the population)."""
    f = figures(state, at, policy)
    state.median_gap_days = f.median_gap_days
    perks: dict[PerkType, tuple[str, str, Evidence]] = {}

    satisfaction = rules.satisfaction(f, policy)
    if (
        _change(state, "satisfaction", satisfaction, at, caused_by, policy, out)
        and satisfaction.value == "dissatisfied"
    ):
        perks["service_recovery"] = (satisfaction.rule, satisfaction.explanation, satisfaction.evidence)

    _ladder(state, f, satisfaction.value, at, caused_by, policy, out, perks)

    activity = rules.activity(f, policy)
    if _change(state, "activity", activity, at, caused_by, policy, out) and activity.value == "inactive":
        perks.setdefault("win_back_offer", (activity.rule, activity.explanation, activity.evidence))
    _change(state, "frequency", rules.frequency(f, policy), at, caused_by, policy, out)
    _change(state, "influence", rules.influence(state, policy), at, caused_by, policy, out)
    step = state.step or "possible"
    relationship = rules.relationship(step, satisfaction.value)
    if _change(state, "relationship", relationship, at, caused_by, policy, out):
        if relationship.value in {"hostage", "enemy"}:
            perks.setdefault("service_recovery", (relationship.rule, relationship.explanation, relationship.evidence))
        elif relationship.value == "mercenary":
            perks.setdefault("membership_offer", (relationship.rule, relationship.explanation, relationship.evidence))
    permanence = rules.permanence(state, at, policy)
    if _change(state, "permanent", permanence, at, caused_by, policy, out) and permanence.value == "true":
        perks.setdefault("personal_attention", (permanence.rule, permanence.explanation, permanence.evidence))
    risk = rules.risk(step, f, policy)
    if _change(state, "risk", risk, at, caused_by, policy, out) and risk.value == "at_risk":
        perks.setdefault("retention_offer", (risk.rule, risk.explanation, risk.evidence))

    for perk, (rule, explanation, evidence) in perks.items():
        _grant(state, perk, rule, explanation, evidence, at, caused_by, policy, out)


def evaluate_volume(
    state: CustomerState, population: Population, caused_by: str, policy: Policy, out: Recorder
) -> None:
    """Classify volume against the population, with the figures as of the customer's own clock."""
    f = figures(state, state.clock, policy)
    _change(state, "volume", rules.volume(f, population), state.clock, caused_by, policy, out)


def _ladder(
    state: CustomerState,
    f: Figures,
    satisfaction: str,
    at: datetime,
    caused_by: str,
    policy: Policy,
    out: Recorder,
    perks: dict[PerkType, tuple[str, str, Evidence]],
) -> None:
    verdict = step_for(state, f, satisfaction, policy)
    current = state.step
    if verdict.step == current:
        state.demotion_pending_since = None
    elif current is None or rank(verdict.step) > rank(current):
        _step(
            state,
            current,
            verdict.step,
            verdict.rule,
            verdict.explanation,
            verdict.evidence,
            at,
            caused_by,
            policy,
            out,
        )
        start = 0 if current is None else rank(current) + 1
        entered_steps = STEPS[start : rank(verdict.step) + 1]
        # Crossed steps earn their perks only if their own rule holds (a buyer who refers a friend
        # becomes a propagandist without ever being habitual).
        for entered in [s for s in entered_steps if rank(s) <= rank(verdict.base) or s == verdict.step]:
            for perk in ON_ENTERING.get(entered, ()):
                perks.setdefault(perk, (f"enters.{entered}", f"Entered the {entered} step.", {"step": entered}))
        state.demotion_pending_since = None
    else:
        grace = timedelta(days=policy.ladder.demotion_grace_days)
        pending = state.demotion_pending_since
        if pending is None:
            state.demotion_pending_since = at
        elif at - pending >= grace:
            evidence: Evidence = {
                **verdict.evidence,
                "rule_stopped_holding_at": pending.isoformat(),
                "grace_days": policy.ladder.demotion_grace_days,
            }
            text = (
                f"The {current} rule has not held since {pending.date()} ({policy.ladder.demotion_grace_days}-day "
                f"grace period over): {verdict.explanation}"
            )
            _step(state, current, verdict.step, "ladder.demotion", text, evidence, at, caused_by, policy, out)
            state.demotion_pending_since = None
    if state.step is not None and rank(state.step) >= rank("habitual"):
        if state.strong_since is None:
            state.strong_since = at
    else:
        state.strong_since = None


def _step(
    state: CustomerState,
    before: str | None,
    after: str,
    rule: str,
    explanation: str,
    evidence: Evidence,
    at: datetime,
    caused_by: str,
    policy: Policy,
    out: Recorder,
) -> None:
    state.step = after
    event = StepChanged(
        event_id=_id("step", state.customer_id, "step", after, caused_by),
        type="customer.step_changed",
        customer_id=state.customer_id,
        occurred_at=at,
        schema_version=1,
        policy_version=policy.version,
        caused_by=caused_by,
        from_step=before,
        to_step=after,
        rule=rule,
        explanation=explanation,
        evidence=evidence,
    )
    out.emitted.append(event)
    _remember(
        state,
        {"kind": "step", "from": before, "to": after, "rule": rule, "explanation": explanation, "at": at},
    )


def _change(
    state: CustomerState,
    dimension: Dimension,
    verdict: rules.Verdict,
    at: datetime,
    caused_by: str,
    policy: Policy,
    out: Recorder,
) -> bool:
    current = getattr(state, dimension)
    before = ("true" if current else "false") if dimension == "permanent" else current
    if verdict.value == before:
        return False
    setattr(state, dimension, verdict.value == "true" if dimension == "permanent" else verdict.value)
    out.emitted.append(
        ClassificationChanged(
            event_id=_id("cls", state.customer_id, dimension, verdict.value, caused_by),
            type="customer.classification_changed",
            customer_id=state.customer_id,
            occurred_at=at,
            schema_version=1,
            policy_version=policy.version,
            caused_by=caused_by,
            dimension=dimension,
            from_value=before,
            to_value=verdict.value,
            rule=verdict.rule,
            explanation=verdict.explanation,
            evidence=verdict.evidence,
        )
    )
    _remember(state, {"kind": dimension, "from": before, "to": verdict.value, "rule": verdict.rule,
                      "explanation": verdict.explanation, "at": at})  # fmt: skip
    return True


def _grant(
    state: CustomerState,
    perk: PerkType,
    rule: str,
    explanation: str,
    evidence: Evidence,
    at: datetime,
    caused_by: str,
    policy: Policy,
    out: Recorder,
) -> None:
    result = offer(state, perk, rule, explanation, evidence, at, caused_by, policy)
    if isinstance(result, SuppressedPerk):
        out.suppressed.append(result)
        _remember(state, {"kind": "perk_suppressed", "perk": perk, "rule": rule, "explanation": result.explanation,
                          "at": at})  # fmt: skip
    else:
        out.emitted.append(result)
        _remember(state, {"kind": "perk", "perk": perk, "rule": rule, "explanation": explanation, "at": at})


def grant_referral_reward(state: CustomerState, at: datetime, caused_by: str, policy: Policy, out: Recorder) -> None:
    """Each converted referral earns the referrer a referral_reward."""
    text = f"A customer they referred made a first purchase ({state.converted_referrals} converted so far)."
    evidence: Evidence = {"converted_referrals": state.converted_referrals}
    _grant(state, "referral_reward", "referral.converted", text, evidence, at, caused_by, policy, out)


def _remember(state: CustomerState, decision: dict[str, Any]) -> None:
    decision["at"] = decision["at"].isoformat()
    state.decisions.append(decision)
    del state.decisions[:-MAX_DECISIONS]


def _id(prefix: str, customer_id: str, what: str, value: str, caused_by: str) -> str:
    digest = hashlib.sha256(f"{customer_id}|{what}|{value}|{caused_by}".encode()).hexdigest()
    return f"{prefix}-{digest[:24]}"
