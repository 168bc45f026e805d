"""Apply every rule at one moment: change what changed, explain it, and offer the perks it triggers."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
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
from schemas.events import STEPS, ClassificationChanged, Dimension, Evidence, PerkGranted, PerkType, StepChanged

MAX_DECISIONS = 10
PerkCall = tuple[str, str, Evidence]  # rule, explanation, evidence


def evaluate(state: CustomerState, at: datetime, caused_by: str, policy: Policy, out: Recorder) -> None:
    """Run the ladder and the classifications at `at` (not volume: it needs the population)."""
    moment = _Moment(state, at, caused_by, policy, out)
    f = figures(state, at, policy)
    state.median_gap_days = f.median_gap_days
    perks: dict[PerkType, PerkCall] = {}

    satisfaction = rules.satisfaction(f, policy)
    if moment.change("satisfaction", satisfaction) and satisfaction.value == "dissatisfied":
        perks["service_recovery"] = satisfaction.call
    _ladder(moment, f, satisfaction.value, perks)
    activity = rules.activity(f, policy)
    if moment.change("activity", activity) and activity.value == "inactive":
        perks.setdefault("win_back_offer", activity.call)
    moment.change("frequency", rules.frequency(f, policy))
    moment.change("influence", rules.influence(state, policy))
    step = state.step or "possible"
    relationship = rules.relationship(step, satisfaction.value)
    if moment.change("relationship", relationship):
        if relationship.value in {"hostage", "enemy"}:
            perks.setdefault("service_recovery", relationship.call)
        elif relationship.value == "mercenary":
            perks.setdefault("membership_offer", relationship.call)
    permanence = rules.permanence(state, at, policy)
    if moment.change("permanent", permanence) and permanence.value == "true":
        perks.setdefault("personal_attention", permanence.call)
    risk = rules.risk(step, f, policy)
    if moment.change("risk", risk) and risk.value == "at_risk":
        perks.setdefault("retention_offer", risk.call)
    for perk, call in perks.items():
        moment.grant(perk, *call)


def evaluate_volume(
    state: CustomerState, population: Population, caused_by: str, policy: Policy, out: Recorder
) -> None:
    """Classify volume against the population, with the figures as of the customer's own clock."""
    f = figures(state, state.clock, policy)
    _Moment(state, state.clock, caused_by, policy, out).change("volume", rules.volume(f, population))


def grant_referral_reward(state: CustomerState, at: datetime, caused_by: str, policy: Policy, out: Recorder) -> None:
    """Each converted referral earns the referrer a referral_reward."""
    text = f"A customer they referred made a first purchase ({state.converted_referrals} converted so far)."
    evidence: Evidence = {"converted_referrals": state.converted_referrals}
    _Moment(state, at, caused_by, policy, out).grant("referral_reward", "referral.converted", text, evidence)


def _ladder(moment: _Moment, f: Figures, satisfaction: str, perks: dict[PerkType, PerkCall]) -> None:
    state, policy, at = moment.state, moment.policy, moment.at
    verdict = step_for(state, f, satisfaction, policy)
    current = state.step
    if verdict.step == current:
        state.demotion_pending_since = None
    elif current is None or rank(verdict.step) > rank(current):
        moment.step(current, verdict.step, verdict.rule, verdict.explanation, verdict.evidence)
        start = 0 if current is None else rank(current) + 1
        # Crossed steps earn their perks only if their own rule holds (a buyer who refers a friend
        # becomes a propagandist without ever being habitual).
        for entered in STEPS[start : rank(verdict.step) + 1]:
            if rank(entered) <= rank(verdict.base) or entered == verdict.step:
                for perk in ON_ENTERING.get(entered, ()):
                    perks.setdefault(perk, (f"enters.{entered}", f"Entered the {entered} step.", {"step": entered}))
        state.demotion_pending_since = None
    else:
        grace = policy.ladder.demotion_grace_days
        pending = state.demotion_pending_since
        if pending is None:
            state.demotion_pending_since = at
        elif at - pending >= timedelta(days=grace):
            evidence: Evidence = {
                **verdict.evidence,
                "rule_stopped_holding_at": pending.isoformat(),
                "grace_days": grace,
            }
            text = (
                f"The {current} rule has not held since {pending.date()} ({grace}-day grace period over): "
                f"{verdict.explanation}"
            )
            moment.step(current, verdict.step, "ladder.demotion", text, evidence)
            state.demotion_pending_since = None
    if state.step is not None and rank(state.step) >= rank("habitual"):
        state.strong_since = state.strong_since or at
    else:
        state.strong_since = None


@dataclass(slots=True)
class _Moment:
    """One evaluation: whose state, when, because of what, under which policy, recording where."""

    state: CustomerState
    at: datetime
    caused_by: str
    policy: Policy
    out: Recorder

    def header(self, rule: str, explanation: str, evidence: Evidence) -> dict[str, Any]:
        """The fields every decision carries."""
        return {
            "customer_id": self.state.customer_id,
            "occurred_at": self.at,
            "schema_version": 1,
            "policy_version": self.policy.version,
            "caused_by": self.caused_by,
            "rule": rule,
            "explanation": explanation,
            "evidence": evidence,
        }

    def step(self, before: str | None, after: str, rule: str, explanation: str, evidence: Evidence) -> None:
        """Move the customer on the ladder and publish it."""
        self.state.step = after
        event_id = _id("step", self.state.customer_id, "step", after, self.caused_by)
        self.out.emitted.append(
            StepChanged(
                event_id=event_id, type="customer.step_changed", from_step=before, to_step=after,
                **self.header(rule, explanation, evidence),
            )
        )  # fmt: skip
        self.remember("step", rule, explanation, **{"from": before, "to": after})

    def change(self, dimension: Dimension, verdict: rules.Verdict) -> bool:
        """Set a classification if the rule gives another value, and publish the change."""
        current = getattr(self.state, dimension)
        before = ("true" if current else "false") if dimension == "permanent" else current
        if verdict.value == before:
            return False
        setattr(self.state, dimension, verdict.value == "true" if dimension == "permanent" else verdict.value)
        event_id = _id("cls", self.state.customer_id, dimension, verdict.value, self.caused_by)
        self.out.emitted.append(
            ClassificationChanged(
                event_id=event_id, type="customer.classification_changed", dimension=dimension,
                from_value=before, to_value=verdict.value,
                **self.header(verdict.rule, verdict.explanation, verdict.evidence),
            )
        )  # fmt: skip
        self.remember(dimension, verdict.rule, verdict.explanation, **{"from": before, "to": verdict.value})
        return True

    def grant(self, perk: PerkType, rule: str, explanation: str, evidence: Evidence) -> None:
        """Offer a perk: granted and published, or held back and explained."""
        result = offer(self.state, perk, rule, self.at, self.caused_by, self.policy)
        if isinstance(result, SuppressedPerk):
            self.out.suppressed.append(result)
            self.remember("perk_suppressed", rule, result.explanation, perk=perk)
            return
        self.out.emitted.append(
            PerkGranted(
                event_id=result, type="perk.granted", perk_id=result, perk=perk,
                **self.header(rule, explanation, evidence),
            )
        )  # fmt: skip
        self.remember("perk", rule, explanation, perk=perk)

    def remember(self, kind: str, rule: str, explanation: str, **what: Any) -> None:
        """Keep the last decisions with their explanations, for the customer's view."""
        decisions = self.state.decisions
        decisions.append({"kind": kind, **what, "rule": rule, "explanation": explanation, "at": self.at.isoformat()})
        del decisions[:-MAX_DECISIONS]


def _id(prefix: str, customer_id: str, what: str, value: str, caused_by: str) -> str:
    digest = hashlib.sha256(f"{customer_id}|{what}|{value}|{caused_by}".encode()).hexdigest()
    return f"{prefix}-{digest[:24]}"
