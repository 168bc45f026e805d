"""The loyalty policy: every number of the rules, defaults exactly as DOMAIN.md, overridable by a YAML file."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, model_validator

from engine.errors import EscaleraError
from engine.loyalty.perk_rules import DEFAULT_PERK_RULES, PerkRule, PerkRules, by_trigger
from schemas.events import PerkType

Days = Annotated[int, Field(gt=0, le=3650)]
Ratio = Annotated[Decimal, Field(ge=0, le=1)]


class PolicyError(EscaleraError):
    """The policy file is missing, unreadable or holds a value the rules cannot use."""


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Ladder(_Part):
    """Thresholds of the seven steps (seed 003)."""

    window_days: Days = 365
    occasional_min_purchases: PositiveInt = 2
    habitual_min_purchases: PositiveInt = 4
    habitual_max_median_gap_days: Days = 60
    exclusive_min_share_of_wallet: Ratio = Decimal("0.8")
    propagandist_min_referrals: PositiveInt = 1
    propagandist_min_nps: Annotated[int, Field(ge=0, le=10)] = 9
    demotion_grace_days: Days = 30
    at_risk_overdue_factor: Annotated[Decimal, Field(gt=1, le=10)] = Decimal("1.5")


class Classification(_Part):
    """Thresholds of the other dimensions (seeds 000, 001, 004)."""

    inactive_after_days: Days = 180
    frequent_min_purchases: PositiveInt = 6
    frequent_max_median_gap_days: Days = 30
    high_volume_share: Annotated[Decimal, Field(gt=0, le=1)] = Decimal("0.8")
    negative_weight: PositiveInt = 12
    delighted_min_score: PositiveInt = 12
    high_influence_audience: PositiveInt = 10_000
    high_influence_referrals: PositiveInt = 5
    regular_influence_audience: PositiveInt = 500
    regular_influence_referrals: PositiveInt = 1
    permanent_after_days: Days = 3 * 365


class Experience(_Part):
    """What makes a feedback event positive or negative (DOMAIN.md §2)."""

    positive_min_nps: Annotated[int, Field(ge=0, le=10)] = 9
    negative_max_nps: Annotated[int, Field(ge=0, le=10)] = 6
    positive_min_csat: Annotated[int, Field(ge=1, le=5)] = 4
    negative_max_csat: Annotated[int, Field(ge=1, le=5)] = 2


HoldDays = Annotated[int, Field(ge=0, le=3650)]


class Perks(_Part):
    """Perk limits (seed 001): one of a type per cooldown, a cap per period. And the holds (issue 19), both off by
    default: `refund_hold_days`, how long after a purchase its full refund takes back what it earned (the welcome
    or step perks it brought, the referral it converted; 0: never); `referral_hold_days`, how long after a referred
    friend's first purchase the referrer waits for the referral reward, which a full refund within it cancels (0: at
    once)."""

    cooldown_days: Days = 30
    cap: PositiveInt = 3
    cap_period_days: Days = 30
    refund_hold_days: HoldDays = 0
    referral_hold_days: HoldDays = 0

    @property
    def holds(self) -> bool:
        """Whether purchases are held (a refund may undo what they earned, or a referral reward waits)."""
        return self.refund_hold_days > 0 or self.referral_hold_days > 0


class WordOfMouth(_Part):
    """What customers say and to how many, for reports (seed 001): the complaint iceberg (how many unhappy customers
    never complain, how few complaints are formal) and how many people a satisfied or a dissatisfied customer tells.
    Its key in the policy is `operations`."""

    silent_unhappy_share: Ratio = Decimal("0.70")
    formal_complaint_share: Ratio = Decimal("0.02")
    satisfied_tell: Annotated[Decimal, Field(ge=0)] = Decimal("4.5")
    dissatisfied_tell: Annotated[Decimal, Field(ge=0)] = Decimal("9.5")


class Currency(_Part):
    """The base currency and the rates that convert to it (illustrative defaults: set real ones)."""

    base: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "EUR"
    rates: dict[Annotated[str, Field(pattern=r"^[A-Z]{3}$")], Annotated[Decimal, Field(gt=0)]] = Field(
        default_factory=lambda: {
            "EUR": Decimal("1"),
            "USD": Decimal("0.92"),
            "GBP": Decimal("1.17"),
            "MXN": Decimal("0.051"),
            "ARS": Decimal("0.00095"),
            "COP": Decimal("0.00023"),
            "CLP": Decimal("0.00098"),
        }
    )

    @model_validator(mode="after")
    def _base_has_rate_one(self) -> Currency:
        if self.rates.get(self.base) != Decimal(1):
            raise ValueError(f"rates must give the base currency {self.base} a rate of 1")
        return self


class Policy(_Part):
    """The effective loyalty policy."""

    ladder: Ladder = Ladder()
    classification: Classification = Classification()
    experience: Experience = Experience()
    perks: Perks = Perks()
    perk_rules: PerkRules = DEFAULT_PERK_RULES  # the whole table: a file's list replaces the defaults (perk_rules.py)
    operations: WordOfMouth = WordOfMouth()  # the key stays: the policy's version hashes the keys
    currency: Currency = Currency()
    dedup_memory: Annotated[int, Field(ge=16, le=100_000)] = 256
    max_tracked_purchases: Annotated[int, Field(ge=8, le=10_000)] = 200
    max_tracked_feedback: Annotated[int, Field(ge=8, le=10_000)] = 200
    # What a perk of each type costs, in the base currency, for reports (`escalera whatif`); the rules never read it.
    perk_costs: dict[PerkType, Annotated[Decimal, Field(ge=0)]] = Field(default_factory=dict)

    @cached_property
    def version(self) -> str:
        """A hash of the effective policy: outputs carry it so every decision names its rules. The perk rules are
        hashed only when they are not the defaults: the defaults are the rules the engine applied before they were in
        the policy, and a policy that leaves them alone keeps the version (and the outputs) it had then."""
        data = self._data()
        if self.perk_rules == DEFAULT_PERK_RULES:
            del data["perk_rules"]
        for hold in _HOLDS:  # (likewise the holds, off by default: added after the version was published)
            if data["perks"][hold] == 0:
                del data["perks"][hold]
        del data["perk_costs"]  # (prices are for reports: no decision reads them, so they are no part of the version)
        return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()[:12]

    @cached_property
    def perk_triggers(self) -> dict[str, tuple[PerkRule, ...]]:
        """The perk rules of each trigger, in the file's order, computed once (looked up when a trigger fires)."""
        return by_trigger(self.perk_rules)

    @cached_property
    def budgeted(self) -> bool:
        """Whether a perk rule has a budget: only then do the engines count grants in a ledger."""
        return any(rule.budget is not None for rule in self.perk_rules)

    @cached_property
    def spans(self) -> Spans:
        """The policy's durations as timedeltas, computed once (the rules read them on every event)."""
        ladder, classification, perks = self.ladder, self.classification, self.perks
        return Spans(
            window=timedelta(days=ladder.window_days),
            inactive=timedelta(days=classification.inactive_after_days + 1),
            grace=timedelta(days=ladder.demotion_grace_days),
            permanent=timedelta(days=classification.permanent_after_days),
            cooldown=timedelta(days=perks.cooldown_days),
            cap_period=timedelta(days=perks.cap_period_days),
            perk_memory=timedelta(days=max(perks.cooldown_days, perks.cap_period_days)),
            refund_hold=timedelta(days=perks.refund_hold_days),
            referral_hold=timedelta(days=perks.referral_hold_days),
            conversion_hold=timedelta(days=max(perks.refund_hold_days, perks.referral_hold_days)),
        )

    @cached_property
    def overdue_factor(self) -> float:
        """`ladder.at_risk_overdue_factor` as a float, computed once (the due time reads it on every event)."""
        return float(self.ladder.at_risk_overdue_factor)

    @property
    def currencies(self) -> frozenset[str]:
        """The currencies with a rate: purchases in any other are rejected."""
        return frozenset(self.currency.rates)

    def to_base(self, amount: Decimal, currency: str) -> Decimal:
        """An amount in the base currency (cent precision is kept by the rate table's own precision)."""
        return amount * self.currency.rates[currency]

    def to_yaml(self) -> str:
        """The effective policy as YAML, ready to save and edit (`load_policy` reads it back to an equal policy),
        headed by comments: its version and the perk rules in words."""
        data = orjson.loads(orjson.dumps(self._data()))
        rules = "".join(f"#   {line}\n" for line in self.describe_perk_rules())
        head = f"# Escalera loyalty policy, version {self.version}\n# Perk rules (perk_rules below), in words:\n{rules}"
        return head + yaml.safe_dump(data, sort_keys=False)

    def describe_perk_rules(self) -> list[str]:
        """One line per perk rule, in their order: `name: trigger → perks; conditions; window; budget`."""
        return [rule.describe() for rule in self.perk_rules]

    def _data(self) -> dict[str, Any]:
        """The policy as JSON-ready data, under the file's keys (`from` and `to` of a rule's window), without what is
        left unset (a rule without conditions has no `when`)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


@dataclass(frozen=True, slots=True)
class Spans:
    """The policy's durations: the rolling window, inactivity (first day counted as inactive), demotion grace,
    permanence, the perk cooldown and cap period, how long granted perks are remembered, and the holds (a
    conversion is held for the longer of the two: see engine/loyalty/revocation.py)."""

    window: timedelta
    inactive: timedelta
    grace: timedelta
    permanent: timedelta
    cooldown: timedelta
    cap_period: timedelta
    perk_memory: timedelta
    refund_hold: timedelta
    referral_hold: timedelta
    conversion_hold: timedelta


_HOLDS = ("refund_hold_days", "referral_hold_days")
DEFAULT_POLICY = Policy()


def load_policy(path: Path | None) -> Policy:
    """The policy in `path` (YAML; missing keys keep their defaults), or the defaults when `path` is None."""
    if path is None:
        return DEFAULT_POLICY
    try:
        data: Any = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise PolicyError(f"cannot read the policy file {path}: {error}") from None
    if not isinstance(data, dict):
        raise PolicyError(f"the policy file {path} must hold a mapping of settings")
    try:
        return Policy.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'policy'}: {e['msg'].removeprefix('Value error, ')}"
            for e in error.errors()
        )
        raise PolicyError(f"invalid policy file {path}: {problems}") from None
