"""Apply every rule at one moment: change what changed, explain it, and offer the perks it triggers."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from engine.loyalty import classifications as rules
from engine.loyalty.classifications import Why
from engine.loyalty.figures import Figures, figures
from engine.loyalty.ladder import RANK, STRONG_STEPS, step_for, why_step
from engine.loyalty.outcome import Recorder, derived_id
from engine.loyalty.perks import ON_ENTERING, SuppressedPerk, offer
from engine.loyalty.policy import Policy
from engine.loyalty.population import Population
from engine.loyalty.state import CustomerState
from schemas.construct import trusted
from schemas.events import STEPS, ClassificationChanged, Dimension, Evidence, PerkGranted, PerkType, StepChanged

MAX_DECISIONS = 10
PerkCall = tuple[str, str, Evidence]  # rule, explanation, evidence


def evaluate(state: CustomerState, at: datetime, caused_by: str, policy: Policy, out: Recorder) -> None:
    """Run the ladder and the classifications at `at` (not volume: it needs the population)."""
    moment = _Moment(state, at, caused_by, policy, out)
    f = figures(state, at, policy)
    state.median_gap_days = f.median_gap_days
    out.evaluated_spend = at, f.window_spend
    perks: dict[PerkType, PerkCall] = {}

    satisfaction = rules.satisfaction(f, policy)
    if satisfaction != state.satisfaction:
        why = rules.why_satisfaction(satisfaction, f, policy)
        call = moment.change("satisfaction", state.satisfaction, satisfaction, why)
        state.satisfaction = satisfaction
        if satisfaction == "dissatisfied":
            perks["service_recovery"] = call
    _ladder(moment, f, satisfaction, perks)
    activity = rules.activity(f, policy)
    if activity != state.activity:
        call = moment.change("activity", state.activity, activity, rules.why_activity(activity, f, policy))
        state.activity = activity
        if activity == "inactive":
            perks.setdefault("win_back_offer", call)
    frequency = rules.frequency(f, policy)
    if frequency != state.frequency:
        moment.change("frequency", state.frequency, frequency, rules.why_frequency(frequency, f, policy))
        state.frequency = frequency
    influence = rules.influence(state, policy)
    if influence != state.influence:
        moment.change("influence", state.influence, influence, rules.why_influence(influence, state, policy))
        state.influence = influence
    step = state.step or "possible"
    relationship = rules.relationship(step, satisfaction)
    if relationship != state.relationship:
        why = rules.why_relationship(relationship, step, satisfaction)
        call = moment.change("relationship", state.relationship, relationship, why)
        state.relationship = relationship
        if relationship in {"hostage", "enemy"}:
            perks.setdefault("service_recovery", call)
        elif relationship == "mercenary":
            perks.setdefault("membership_offer", call)
    permanent = rules.permanence(state, at, policy)
    if permanent != ("true" if state.permanent else "false"):
        why = rules.why_permanence(permanent, state, at, policy)
        call = moment.change("permanent", "true" if state.permanent else "false", permanent, why)
        state.permanent = permanent == "true"
        if state.permanent:
            perks.setdefault("personal_attention", call)
    risk = rules.risk(step, f, policy)
    if risk != state.risk:
        call = moment.change("risk", state.risk, risk, rules.why_risk(risk, step, f, policy))
        state.risk = risk
        if risk == "at_risk":
            perks.setdefault("retention_offer", call)
    for perk, (rule, explanation, evidence) in perks.items():
        moment.grant(perk, rule, explanation, evidence)


def evaluate_volume(
    state: CustomerState,
    population: Population,
    at: datetime,
    caused_by: str,
    policy: Policy,
    out: Recorder,
    spend: Decimal | None = None,
) -> None:
    """Classify volume at `at` (a day boundary: see `engine.loyalty.volume`) against the population as of then;
    `spend`: the customer's window spend at `at`, when the caller knows it already."""
    if spend is None:
        spend = figures(state, at, policy).window_spend
    volume = rules.volume_of(spend, population)
    if volume != state.volume:
        moment = _Moment(state, at, caused_by, policy, out)
        moment.change("volume", state.volume, volume, rules.why_volume_of(volume, spend, population))
        state.volume, state.volume_since = volume, at


def grant_referral_reward(state: CustomerState, at: datetime, caused_by: str, policy: Policy, out: Recorder) -> None:
    """Each converted referral earns the referrer a referral_reward."""
    text = f"A customer they referred made a first purchase ({state.converted_referrals} converted so far)."
    evidence: Evidence = {"converted_referrals": state.converted_referrals}
    _Moment(state, at, caused_by, policy, out).grant("referral_reward", "referral.converted", text, evidence)


def _ladder(moment: _Moment, f: Figures, satisfaction: str, perks: dict[PerkType, PerkCall]) -> None:
    state, policy, at = moment.state, moment.policy, moment.at
    step, base = step_for(state, f, satisfaction, policy)
    current = state.step
    if step == current:
        state.demotion_pending_since = None
    elif current is None or RANK[step] > RANK[current]:
        moment.step(current, step, f"ladder.{step}", why_step(step, base, state, f, satisfaction, policy))
        start = 0 if current is None else RANK[current] + 1
        # Crossed steps earn their perks only if their own rule holds (a buyer who refers a friend
        # becomes a propagandist without ever being habitual).
        for entered in STEPS[start : RANK[step] + 1]:
            if RANK[entered] <= RANK[base] or entered == step:
                for perk in ON_ENTERING.get(entered, ()):
                    perks.setdefault(perk, (f"enters.{entered}", f"Entered the {entered} step.", {"step": entered}))
        state.demotion_pending_since = None
    else:
        pending = state.demotion_pending_since
        if pending is None:
            state.demotion_pending_since = at
        elif at - pending >= policy.spans.grace:
            grace = policy.ladder.demotion_grace_days
            explanation, evidence = why_step(step, base, state, f, satisfaction, policy)
            text = f"The {current} rule has not held since {pending.date()} ({grace}-day grace period over): "
            evidence = {**evidence, "rule_stopped_holding_at": pending.isoformat(), "grace_days": grace}
            moment.step(current, step, "ladder.demotion", (text + explanation, evidence))
            state.demotion_pending_since = None
    if state.step in STRONG_STEPS:
        state.strong_since = state.strong_since or at
    else:
        state.strong_since = None


class _Moment:
    """One evaluation: whose state, when, because of what, under which policy, recording where."""

    __slots__ = ("_iso", "at", "caused_by", "out", "policy", "state")

    def __init__(self, state: CustomerState, at: datetime, caused_by: str, policy: Policy, out: Recorder) -> None:
        self.state, self.at, self.caused_by, self.policy, self.out = state, at, caused_by, policy, out
        self._iso: str | None = None

    def decision(self, event_id: str, rule: str, why: Why) -> dict[str, Any]:
        """The fields every decision carries, in the contract's order (the type-specific ones follow)."""
        late = self.out.late
        if late is not None:
            text = f" The event arrived late: it happened at {late.isoformat()}, after what was decided as of "
            why = why[0] + text + f"{self.at.isoformat()}.", {**why[1], "arrived_late": late.isoformat()}
        return {
            "event_id": event_id,
            "customer_id": self.state.customer_id,
            "occurred_at": self.at,
            "schema_version": 1,
            "policy_version": self.policy.version,
            "caused_by": self.caused_by,
            "rule": rule,
            "explanation": why[0],
            "evidence": why[1],
        }

    def step(self, before: str | None, after: str, rule: str, why: Why) -> None:
        """Move the customer on the ladder and publish it."""
        self.state.step = after
        values = self.decision(self.id("step", "step", after), rule, why)
        values["type"] = "customer.step_changed"
        values["from_step"] = before
        values["to_step"] = after
        self.out.emitted.append(trusted(StepChanged, values))
        self.remember({"kind": "step", "from": before, "to": after, "rule": rule, "explanation": why[0]})

    def change(self, dimension: Dimension, before: str, after: str, why: Why) -> PerkCall:
        """Publish a classification's new value (the caller sets it); return what a perk it triggers carries."""
        rule = f"{dimension}.{after}"
        values = self.decision(self.id("cls", dimension, after), rule, why)
        values["type"] = "customer.classification_changed"
        values["dimension"] = dimension
        values["from_value"] = before
        values["to_value"] = after
        self.out.emitted.append(trusted(ClassificationChanged, values))
        self.remember({"kind": dimension, "from": before, "to": after, "rule": rule, "explanation": why[0]})
        return rule, why[0], why[1]

    def grant(self, perk: PerkType, rule: str, explanation: str, evidence: Evidence) -> None:
        """Offer a perk: granted and published, or held back and explained."""
        result = offer(self.state, perk, rule, self.at, self.caused_by, self.policy)
        if isinstance(result, SuppressedPerk):
            self.out.suppressed.append(result)
            self.remember({"kind": "perk_suppressed", "perk": perk, "rule": rule, "explanation": result.explanation})
            return
        values = self.decision(result, rule, (explanation, evidence))
        values["type"] = "perk.granted"
        values["perk_id"] = result
        values["perk"] = perk
        self.out.emitted.append(trusted(PerkGranted, values))
        self.remember({"kind": "perk", "perk": perk, "rule": rule, "explanation": explanation})

    def id(self, prefix: str, what: str, value: str) -> str:
        """A transition's id, derived only from its inputs."""
        return derived_id(prefix, self.state.customer_id, what, value, self.caused_by)

    def remember(self, decision: dict[str, Any]) -> None:
        """Keep the last decisions with their explanations, for the customer's view (`decision`: kind, what, rule and
        explanation; the time is added)."""
        if self._iso is None:
            self._iso = self.at.isoformat()
        decision["at"] = self._iso
        decisions = self.state.decisions
        decisions.append(decision)
        if len(decisions) > MAX_DECISIONS:
            del decisions[:-MAX_DECISIONS]
