"""Perk rules (the policy's `perk_rules`): which perks a trigger earns, for which customers, in which window of event
time, within which budget.

The defaults are DOMAIN.md §3's table, the rules the engine always applied: each is named after its trigger, and that
name is the `rule` of the perks it grants (and goes into their ids), so a policy that leaves the rules alone decides
byte for byte what the engine decided before the rules were in the policy. A custom rule's name is its `rule` the
same way (a rule without a name is named after its trigger).

How rules apply, at one evaluation of a customer (one event, or one day boundary of the passage of time):

- Triggers fire in the order the engine decides: satisfaction, the steps entered (in ladder order, each only if its
  own step rule holds: see `evaluation._ladder`), activity, frequency, influence, relationship, permanence, risk;
  volume at a day boundary, `referral.converted` after a converted referral.
- A perk is offered once per evaluation: by the first rule, in that order (and in the file's order for rules of one
  trigger), whose window and conditions hold for the customer as the evaluation leaves them. When none holds, the
  first rule that called for it explains why it was held back (reason `window` or `condition`): never lost silently.
- The perk offered then passes the cooldown and the cap (`engine.loyalty.perks.offer`), then its rule's budget
  (`engine.loyalty.budgets`): a perk held back by either is explained with its reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PositiveInt,
    field_validator,
    model_validator,
)

from engine.loyalty.budgets import Period
from engine.loyalty.state import CustomerState
from schemas.events import STEPS, CustomerKind, Dimension, PerkType, Step

# The values each classification takes (engine/loyalty/classifications.py); `<dimension>.<value>` is the rule name
# of a change to that value, and a trigger of perk rules.
Activity = Literal["never", "active", "inactive"]
Frequency = Literal["none", "occasional", "habitual", "frequent"]
Volume = Literal["none", "low", "medium", "high"]
Satisfaction = Literal["unknown", "dissatisfied", "satisfied", "delighted"]
Influence = Literal["none", "regular", "high"]
Relationship = Literal["unknown", "apostle", "mercenary", "hostage", "enemy"]
Permanence = Literal["true", "false"]
Risk = Literal["none", "at_risk"]
DIMENSION_VALUES: dict[Dimension, tuple[str, ...]] = {
    "satisfaction": get_args(Satisfaction),
    "activity": get_args(Activity),
    "frequency": get_args(Frequency),
    "influence": get_args(Influence),
    "relationship": get_args(Relationship),
    "permanent": get_args(Permanence),
    "risk": get_args(Risk),
    "volume": get_args(Volume),
}
REFERRAL_CONVERTED = "referral.converted"
TRIGGERS: frozenset[str] = frozenset(
    (
        *(f"enters.{step}" for step in STEPS),
        *(f"{dimension}.{value}" for dimension, values in DIMENSION_VALUES.items() for value in values),
        REFERRAL_CONVERTED,
    )
)
_KNOWN = (
    f"enters.<step> for a step of {', '.join(STEPS)}; "
    + "; ".join(f"{dimension}.{'|'.join(values)}" for dimension, values in DIMENSION_VALUES.items())
    + f"; {REFERRAL_CONVERTED}"
)

HeldBack = tuple[Literal["window", "condition"], str]  # why a rule does not apply now, and that in words


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _listed(value: Any) -> Any:
    """A single value where a list is expected is a list of one (`kind: final` reads as `kind: [final]`)."""
    return [value] if isinstance(value, str) else value


def _utc_moment(value: Any) -> Any:
    """A window's end as an aware UTC datetime: a date is its midnight UTC; a time must carry its offset."""
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value)
        except ValueError:
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                return value  # (pydantic says what is wrong with it)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("a time needs its UTC offset, e.g. 2025-12-01T00:00:00Z (or a date: its midnight UTC)")
        return value.astimezone(UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(), tzinfo=UTC)
    return value


Moment = Annotated[AwareDatetime, BeforeValidator(_utc_moment)]
RuleName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")]


class Conditions(_Part):
    """Who a rule is for: every listed field must hold (each lists the values it accepts); fields left out accept
    anyone. Read from the customer as the evaluation leaves them."""

    kind: Annotated[tuple[CustomerKind, ...], BeforeValidator(_listed), Field(min_length=1)] | None = None
    step: Annotated[tuple[Step, ...], BeforeValidator(_listed), Field(min_length=1)] | None = None
    relationship: Annotated[tuple[Relationship, ...], BeforeValidator(_listed), Field(min_length=1)] | None = None
    satisfaction: Annotated[tuple[Satisfaction, ...], BeforeValidator(_listed), Field(min_length=1)] | None = None
    activity: Annotated[tuple[Activity, ...], BeforeValidator(_listed), Field(min_length=1)] | None = None
    volume: Annotated[tuple[Volume, ...], BeforeValidator(_listed), Field(min_length=1)] | None = None

    @cached_property
    def tests(self) -> tuple[tuple[str, frozenset[str]], ...]:
        """The conditions set, in field order: (the customer's field, the values it accepts)."""
        return tuple(
            (name, frozenset(accepted))
            for name in type(self).model_fields
            if (accepted := getattr(self, name)) is not None
        )

    def failed(self, state: CustomerState) -> tuple[str, frozenset[str], str] | None:
        """The first condition the customer does not meet: (field, accepted values, the customer's value)."""
        for name, accepted in self.tests:
            value = _value_of(state, name)
            if value not in accepted:
                return name, accepted, value
        return None

    def words(self) -> str:
        """The conditions in words: `kind is final or external, step is habitual`."""
        return ", ".join(f"{name} is {_alternatives(getattr(self, name))}" for name, _ in self.tests)


class Budget(_Part):
    """At most `max` grants per calendar `per` (UTC, of event time) across every customer: of the rule's perks
    together (`scope: rule`), or of each of its perks (`scope: perk`). Counted exactly across partitions: see
    `engine.loyalty.budgets`."""

    max: PositiveInt
    per: Literal["day", "week", "month", "year"]
    scope: Literal["rule", "perk"] = "rule"

    def period_of(self, at: datetime) -> Period:
        """The calendar period (UTC) holding `at`: a day, an ISO week (from Monday), a month or a year."""
        if at.tzinfo is not UTC:
            at = at.astimezone(UTC)
        if self.per == "day":
            start = datetime(at.year, at.month, at.day, tzinfo=UTC)
            return Period(start, start + timedelta(days=1))
        if self.per == "week":
            start = datetime(at.year, at.month, at.day, tzinfo=UTC) - timedelta(days=at.weekday())
            return Period(start, start + timedelta(days=7))
        if self.per == "month":
            start = datetime(at.year, at.month, 1, tzinfo=UTC)
            after = datetime(at.year + at.month // 12, at.month % 12 + 1, 1, tzinfo=UTC)
            return Period(start, after)
        return Period(datetime(at.year, 1, 1, tzinfo=UTC), datetime(at.year + 1, 1, 1, tzinfo=UTC))

    def key(self, rule: str, perk: str) -> str:
        """What the ledger counts grants under: the rule, or the rule and the perk."""
        return rule if self.scope == "rule" else f"{rule}/{perk}"

    def words(self, perk: str | None = None) -> str:
        """`100 grants a month`, or `100 priority_service a month` for a budget per perk."""
        what = ("grant" if self.max == 1 else "grants") if self.scope == "rule" else (perk or "of each perk")
        return f"{self.max} {what} a {self.per}"

    def label(self, period: Period) -> str:
        """The period in words: `2025-12-03`, `the week of 2025-12-01`, `2025-12`, `2025`."""
        start = period.start
        if self.per == "day":
            return start.date().isoformat()
        if self.per == "week":
            return f"the week of {start.date().isoformat()}"
        if self.per == "month":
            return f"{start.year:04d}-{start.month:02d}"
        return f"{start.year:04d}"


class PerkRule(_Part):
    """A trigger and the perks it earns; optionally only for some customers (`when`), only within a window of event
    time (`from` included, `to` not), and at most so many grants a period (`budget`)."""

    name: RuleName
    trigger: str
    perks: Annotated[tuple[PerkType, ...], BeforeValidator(_listed), Field(min_length=1)]
    when: Conditions | None = None
    starts: Moment | None = Field(None, alias="from")
    ends: Moment | None = Field(None, alias="to")
    budget: Budget | None = None

    @model_validator(mode="before")
    @classmethod
    def _named_after_its_trigger(cls, data: Any) -> Any:
        if isinstance(data, dict) and "name" not in data and isinstance(data.get("trigger"), str):
            return {"name": data["trigger"], **data}
        return data

    @field_validator("trigger")
    @classmethod
    def _known_trigger(cls, trigger: str) -> str:
        if trigger not in TRIGGERS:
            raise ValueError(f"unknown trigger {trigger!r} (known: {_KNOWN})")
        return trigger

    @field_validator("perks")
    @classmethod
    def _each_perk_once(cls, perks: tuple[PerkType, ...]) -> tuple[PerkType, ...]:
        repeated = sorted({perk for perk in perks if perks.count(perk) > 1})
        if repeated:
            raise ValueError(f"{', '.join(repeated)} listed more than once")
        return perks

    @model_validator(mode="after")
    def _window_ends_after_it_starts(self) -> PerkRule:
        if self.starts is not None and self.ends is not None and self.ends <= self.starts:
            raise ValueError(f"the window must end after it starts (from {_day(self.starts)} to {_day(self.ends)})")
        return self

    @cached_property
    def gated(self) -> bool:
        """Whether a window or a condition may keep the rule from applying (default rules: never)."""
        return self.starts is not None or self.ends is not None or (self.when is not None and bool(self.when.tests))

    @cached_property
    def plain(self) -> bool:
        """Whether the rule has no window, condition or budget (the default rules): its perks' explanations are its
        trigger's alone."""
        return not self.gated and self.budget is None

    def held_back(self, perk: str, state: CustomerState, at: datetime) -> HeldBack | None:
        """Why the rule does not give `perk` to the customer at `at` (the window first, then the conditions), or
        None when it does."""
        if (self.starts is not None and at < self.starts) or (self.ends is not None and at >= self.ends):
            return "window", (
                f"Held back: rule {self.name} gives {perk} {self._window_words()}, and this was decided at "
                f"{at.isoformat()}."
            )
        failed = None if self.when is None else self.when.failed(state)
        if failed is not None:
            name, accepted, value = failed
            return "condition", (
                f"Held back: rule {self.name} gives {perk} only to customers whose {name} is "
                f"{_alternatives(sorted(accepted))}; this customer's {name} is {value}."
            )
        return None

    def terms(self) -> str:
        """The rule's conditions, window and budget in words ("" for a rule that has none)."""
        parts = []
        if self.when is not None and self.when.tests:
            parts.append(f"for customers whose {self.when.words()}")
        if self.starts is not None or self.ends is not None:
            parts.append(self._window_words())
        if self.budget is not None:
            parts.append(f"at most {self.budget.words()}")
        return "; ".join(parts)

    def describe(self) -> str:
        """One line for people: `name: trigger → perks; conditions; window; budget` (no name when it is the
        trigger's)."""
        terms = self.terms()
        named = "" if self.name == self.trigger else f"{self.name}: "
        return f"{named}{self.trigger} → {', '.join(self.perks)}" + (f"; {terms}" if terms else "")

    def _window_words(self) -> str:
        if self.starts is not None and self.ends is not None:
            return f"from {_day(self.starts)} until {_day(self.ends)} (not included)"
        if self.starts is not None:
            return f"from {_day(self.starts)} on"
        assert self.ends is not None
        return f"until {_day(self.ends)} (not included)"


def _each_name_once(rules: tuple[PerkRule, ...]) -> tuple[PerkRule, ...]:
    seen: dict[str, int] = {}
    for number, rule in enumerate(rules):
        if rule.name in seen:
            raise ValueError(
                f"two rules are named {rule.name!r} ({seen[rule.name]} and {number}): name them apart "
                "(a rule without a name is named after its trigger)"
            )
        seen[rule.name] = number
    return rules


PerkRules = Annotated[tuple[PerkRule, ...], AfterValidator(_each_name_once)]


def _rule(trigger: str, *perks: PerkType) -> PerkRule:
    return PerkRule(name=trigger, trigger=trigger, perks=perks)


DEFAULT_PERK_RULES: tuple[PerkRule, ...] = (
    _rule("enters.buyer", "welcome_offer"),
    _rule("enters.habitual", "priority_service", "special_offer"),
    _rule("enters.exclusive", "early_access", "tailored_service"),
    _rule("enters.propagandist", "referral_reward", "raffle_entry", "participation_invite"),
    _rule(REFERRAL_CONVERTED, "referral_reward"),
    _rule("satisfaction.dissatisfied", "service_recovery"),
    _rule("relationship.hostage", "service_recovery"),
    _rule("relationship.enemy", "service_recovery"),
    _rule("relationship.mercenary", "membership_offer"),
    _rule("activity.inactive", "win_back_offer"),
    _rule("risk.at_risk", "retention_offer"),
    _rule("permanent.true", "personal_attention"),
)
"""DOMAIN.md §3: what the engine granted before the rules were in the policy, and grants by default."""


def by_trigger(rules: Iterable[PerkRule]) -> dict[str, tuple[PerkRule, ...]]:
    """The rules of each trigger, in their order (the engine looks them up when a trigger fires)."""
    table: dict[str, list[PerkRule]] = {}
    for rule in rules:
        table.setdefault(rule.trigger, []).append(rule)
    return {trigger: tuple(listed) for trigger, listed in table.items()}


def _value_of(state: CustomerState, name: str) -> str:
    if name == "step":
        return state.step or "possible"
    return str(getattr(state, name))


def _alternatives(values: Iterable[str]) -> str:
    listed = list(values)
    return listed[0] if len(listed) == 1 else f"{', '.join(listed[:-1])} or {listed[-1]}"


def _day(moment: datetime) -> str:
    """A window's end in words: its date when it is a midnight UTC, else the full time."""
    return moment.date().isoformat() if moment.timetz() == time(tzinfo=UTC) else moment.isoformat()
