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
from engine.loyalty.perk_rules import REFERRAL_CONVERTED, PerkRule
from engine.loyalty.perks import SuppressedPerk, offer, perk_id
from engine.loyalty.policy import Policy
from engine.loyalty.population import Population
from engine.loyalty.state import CustomerState, EarnedPerk
from schemas.construct import trusted
from schemas.events import (
    STEPS,
    ClassificationChanged,
    Dimension,
    Evidence,
    PerkGranted,
    PerkRevoked,
    PerkType,
    StepChanged,
)

MAX_DECISIONS = 10
PerkCall = tuple[str, str, Evidence]  # trigger, explanation, evidence
Offers = dict[PerkType, list[tuple[PerkRule, PerkCall]]]  # each perk called for: the rules calling, in order


def evaluate(state: CustomerState, at: datetime, caused_by: str, policy: Policy, out: Recorder) -> None:
    """Run the ladder and the classifications at `at` (not volume: it needs the population), then offer the perks
    their changes trigger (the policy's perk rules: see engine/loyalty/perk_rules.py for the order)."""
    moment = _Moment(state, at, caused_by, policy, out)
    f = figures(state, at, policy)
    state.median_gap_days = f.median_gap_days
    out.evaluated_spend = at, f.window_spend
    triggers = policy.perk_triggers
    offers: Offers = {}

    satisfaction = rules.satisfaction(f, policy)
    if satisfaction != state.satisfaction:
        why = rules.why_satisfaction(satisfaction, f, policy)
        call = moment.change("satisfaction", state.satisfaction, satisfaction, why)
        state.satisfaction = satisfaction
        _call_for(offers, triggers.get(call[0]), call)
    _ladder(moment, f, satisfaction, offers)
    activity = rules.activity(f, policy)
    if activity != state.activity:
        call = moment.change("activity", state.activity, activity, rules.why_activity(activity, f, policy))
        state.activity = activity
        _call_for(offers, triggers.get(call[0]), call)
    frequency = rules.frequency(f, policy)
    if frequency != state.frequency:
        call = moment.change("frequency", state.frequency, frequency, rules.why_frequency(frequency, f, policy))
        state.frequency = frequency
        _call_for(offers, triggers.get(call[0]), call)
    influence = rules.influence(state, policy)
    if influence != state.influence:
        call = moment.change("influence", state.influence, influence, rules.why_influence(influence, state, policy))
        state.influence = influence
        _call_for(offers, triggers.get(call[0]), call)
    step = state.step or "possible"
    relationship = rules.relationship(step, satisfaction)
    if relationship != state.relationship:
        why = rules.why_relationship(relationship, step, satisfaction)
        call = moment.change("relationship", state.relationship, relationship, why)
        state.relationship = relationship
        _call_for(offers, triggers.get(call[0]), call)
    permanent = rules.permanence(state, at, policy)
    if permanent != ("true" if state.permanent else "false"):
        why = rules.why_permanence(permanent, state, at, policy)
        call = moment.change("permanent", "true" if state.permanent else "false", permanent, why)
        state.permanent = permanent == "true"
        _call_for(offers, triggers.get(call[0]), call)
    risk = rules.risk(step, f, policy)
    if risk != state.risk:
        call = moment.change("risk", state.risk, risk, rules.why_risk(risk, step, f, policy))
        state.risk = risk
        _call_for(offers, triggers.get(call[0]), call)
    for perk, calls in offers.items():
        moment.offer(perk, calls)


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
        call = moment.change("volume", state.volume, volume, rules.why_volume_of(volume, spend, population))
        state.volume, state.volume_since = volume, at
        _offer_all(moment, policy.perk_triggers.get(call[0]), call)


def grant_referral_reward(
    state: CustomerState, at: datetime, caused_by: str, policy: Policy, out: Recorder, hold_days: int = 0
) -> None:
    """Each converted referral earns the referrer what the `referral.converted` rules give (a referral_reward);
    `hold_days`: the referral hold it waited for (engine/loyalty/revocation.py), said in its explanation."""
    called = policy.perk_triggers.get(REFERRAL_CONVERTED)
    if called:
        text = f"A customer they referred made a first purchase ({state.converted_referrals} converted so far)."
        evidence: Evidence = {"converted_referrals": state.converted_referrals}
        if hold_days:
            text += f" It was not fully refunded within the {hold_days}-day referral hold."
            evidence["referral_hold_days"] = hold_days
        _offer_all(_Moment(state, at, caused_by, policy, out), called, (REFERRAL_CONVERTED, text, evidence))


def revoke_perks(
    state: CustomerState,
    at: datetime,
    caused_by: str,
    earned: tuple[EarnedPerk, ...],
    rule: str,
    why: Why,
    policy: Policy,
    out: Recorder,
) -> None:
    """Take back perks granted earlier (`earned`), each published as a `perk.revoked` naming it, and forget each in
    the cooldown and cap memory (`rule`, `why`: the rule that undid them, and why in words and figures)."""
    moment = _Moment(state, at, caused_by, policy, out)
    for pid, perk, granted_at in earned:
        moment.revoke(pid, perk, rule, why)
        memory = state.perks
        for index, (remembered, t) in enumerate(memory):
            if remembered == perk and t == granted_at:
                del memory[index]
                break


def _call_for(offers: Offers, called: tuple[PerkRule, ...] | None, call: PerkCall) -> None:
    """Note in `offers` the perks of the rules a trigger `called` (None: no rule has that trigger)."""
    if called:
        for rule in called:
            for perk in rule.perks:
                calls = offers.get(perk)
                if calls is None:
                    offers[perk] = [(rule, call)]
                else:
                    calls.append((rule, call))


def _offer_all(moment: _Moment, called: tuple[PerkRule, ...] | None, call: PerkCall) -> None:
    """Offer the perks of the rules one trigger `called`, alone in its evaluation."""
    if called:
        offers: Offers = {}
        _call_for(offers, called, call)
        for perk, calls in offers.items():
            moment.offer(perk, calls)


def _earned(state: CustomerState, caused_by: str, perk: EarnedPerk) -> None:
    """Note a perk among what the held purchase or referral credit `caused_by` earned (nothing if it is not held)."""
    held = state.held
    for index, entry in enumerate(held):
        if entry[0] == caused_by:
            held[index] = (*entry[:5], (*entry[5], perk))
            return


def _ladder(moment: _Moment, f: Figures, satisfaction: str, offers: Offers) -> None:
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
        triggers = policy.perk_triggers
        for entered in STEPS[start : RANK[step] + 1]:
            if RANK[entered] <= RANK[base] or entered == step:
                trigger = f"enters.{entered}"
                called = triggers.get(trigger)
                if called:
                    _call_for(offers, called, (trigger, f"Entered the {entered} step.", {"step": entered}))
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

    def offer(self, perk: PerkType, calls: list[tuple[PerkRule, PerkCall]]) -> None:
        """Offer a perk the rules called for, once: by the first rule whose window and conditions hold now (then the
        limits decide: `grant`); when none holds, the first rule that called for it says why it was held back."""
        held = None
        for rule, (_, explanation, evidence) in calls:
            if rule.gated:
                why_not = rule.held_back(perk, self.state, self.at)
                if why_not is not None:
                    held = held or (rule, why_not)
                    continue
            if not rule.plain:  # the rule's terms are part of why it was granted
                explanation = f"{explanation} Rule {rule.name}: {rule.terms()}."
            self.grant(perk, rule, explanation, evidence)
            return
        assert held is not None
        rule, (reason, text) = held
        pid = perk_id(self.state.customer_id, rule.name, perk, self.caused_by)
        self.hold(SuppressedPerk(perk, rule.name, reason, pid, self.state.customer_id, self.at, self.caused_by, text))

    def grant(self, perk: PerkType, rule: PerkRule, explanation: str, evidence: Evidence) -> None:
        """Give a perk its rule holds for: granted and published, or held back by the limits and explained."""
        result = offer(self.state, perk, rule.name, self.at, self.caused_by, self.policy, rule.budget, self.out.ledger)
        if isinstance(result, SuppressedPerk):
            self.hold(result)
            return
        values = self.decision(result, rule.name, (explanation, evidence))
        values["type"] = "perk.granted"
        values["perk_id"] = result
        values["perk"] = perk
        self.out.emitted.append(trusted(PerkGranted, values))
        self.remember({"kind": "perk", "perk": perk, "rule": rule.name, "explanation": explanation})
        if self.state.held and (rule.trigger.startswith("enters.") or rule.trigger == REFERRAL_CONVERTED):
            _earned(self.state, self.caused_by, (result, perk, self.at))

    def revoke(self, pid: str, perk: str, rule: str, why: Why) -> None:
        """Publish that the perk `pid` is taken back (the caller forgets it)."""
        values = self.decision(derived_id("revoke", self.state.customer_id, "perk", pid, self.caused_by), rule, why)
        values["type"] = "perk.revoked"
        values["perk_id"] = pid
        values["perk"] = perk
        out = self.out
        if not out.revoked:
            out.revoked_at = len(out.emitted)
        out.revoked.append(trusted(PerkRevoked, values))
        self.remember({"kind": "perk_revoked", "perk": perk, "rule": rule, "explanation": why[0]})

    def hold(self, held: SuppressedPerk) -> None:
        """Record a perk held back, with why."""
        self.out.suppressed.append(held)
        why = held.explanation
        self.remember({"kind": "perk_suppressed", "perk": held.perk, "rule": held.rule, "explanation": why})

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
