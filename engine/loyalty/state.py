"""A customer's state: the facts the rules need, bounded in size, and the classifications they gave."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec
import orjson

from engine.loyalty.state_codec import pack, unpack

# (order_id, occurred_at, amount in base currency, refunded in base currency)
Purchase = tuple[str, datetime, Decimal, Decimal]
# (occurred_at, positive, negative, exceeded expectations, NPS at the top, public positive statement)
Feedback = tuple[datetime, bool, bool, bool, bool, bool]
# (perk, granted at)
PerkGrant = tuple[str, datetime]
# (perk_id, perk, granted at): a perk granted for something that may still be undone
EarnedPerk = tuple[str, str, datetime]
# Something that may still be undone within the policy's holds (engine/loyalty/revocation.py): (the event id of what
# earned it: a purchase's, or a referral credit's; when it happened; the purchase's order id (None for a credit); the
# referrer its purchase converted (None if none); whether a referral reward waits for the hold to pass; the perks it
# earned)
Held = tuple[str, datetime, str | None, str | None, bool, tuple[EarnedPerk, ...]]


@dataclass(slots=True)
class CustomerState:
    """Everything Escalera keeps about one customer; no history beyond the rolling window and a few ids."""

    customer_id: str
    clock: datetime
    kind: str = "final"
    has_need: bool = False
    can_afford: bool = False
    can_decide: bool = False
    referred_by: str | None = None
    has_purchased: bool = False
    last_purchase_at: datetime | None = None
    last_interest_at: datetime | None = None
    purchases: list[Purchase] = field(default_factory=list)
    feedback: list[Feedback] = field(default_factory=list)
    share_of_wallet: Decimal | None = None
    audience: int = 0
    converted_referrals: int = 0
    formal_complaints: int = 0
    informal_complaints: int = 0
    step: str | None = None  # None until first placed on the ladder
    demotion_pending_since: datetime | None = None
    strong_since: datetime | None = None
    activity: str = "never"
    frequency: str = "none"
    volume: str = "none"
    volume_since: datetime | None = None  # the midnight its volume class was last changed at (see loyalty.volume)
    satisfaction: str = "unknown"
    influence: str = "none"
    relationship: str = "unknown"
    permanent: bool = False
    risk: str = "none"
    median_gap_days: float | None = None  # as of the last evaluation (at `clock`), for the at-risk due time
    due: datetime | None = None  # the next day boundary at which time could change something (see next_due)
    perks: list[PerkGrant] = field(default_factory=list)
    seen_ids: list[str] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    # Within the holds only, and only under a policy with holds: stored only when not empty (a state without holds is
    # stored byte for byte as before they existed, and one stored before reads as holding none).
    held: list[Held] = field(default_factory=list)

    def copy(self) -> CustomerState:
        """A copy whose lists can change without touching this one."""
        clone = CustomerState.__new__(CustomerState)
        for name in _FIELDS:
            value = getattr(self, name)
            setattr(clone, name, value.copy() if isinstance(value, list) else value)
        return clone

    def encode(self) -> bytes:
        """The state as stored in the table and its changelog: its JSON (`to_json`) compressed by the state codec
        (engine/loyalty/state_codec.py: a zstd frame, about a tenth of the JSON); `decode` reads it back exactly."""
        return pack(self.to_json())

    @classmethod
    def decode(cls, raw: bytes) -> CustomerState:
        """The state `encode` wrote, or the plain JSON (`to_json`) states were stored as before the codec."""
        return cls.from_json(unpack(raw))

    def to_json(self) -> bytes:
        """The state as JSON bytes (decimals as strings, times as RFC 3339); `from_json` reads it back exactly. Not
        what is stored: that is `encode`."""
        data = {name: getattr(self, name) for name in _STORED}
        if self.held:
            data["held"] = self.held
        return orjson.dumps(data, default=_encode)

    @classmethod
    def from_json(cls, raw: bytes) -> CustomerState:
        """The state `to_json` wrote."""
        data = orjson.loads(raw)
        for name in (
            "clock",
            "last_purchase_at",
            "last_interest_at",
            "demotion_pending_since",
            "strong_since",
            "due",
            "volume_since",
        ):
            if data.get(name) is not None:  # (volume_since: absent from states written before it was kept)
                data[name] = datetime.fromisoformat(data[name])
        if data["share_of_wallet"] is not None:
            data["share_of_wallet"] = Decimal(data["share_of_wallet"])
        data["purchases"] = [(o, datetime.fromisoformat(t), Decimal(a), Decimal(r)) for o, t, a, r in data["purchases"]]
        data["feedback"] = [(datetime.fromisoformat(t), *flags) for t, *flags in data["feedback"]]
        data["perks"] = [(perk, datetime.fromisoformat(t)) for perk, t in data["perks"]]
        held = data.get("held")
        if held is not None:
            data["held"] = [
                (cause, datetime.fromisoformat(t), order, referrer, pending, tuple(_earned(e) for e in earned))
                for cause, t, order, referrer, pending, earned in held
            ]
        return cls(**data)


_FIELDS = tuple(f.name for f in fields(CustomerState))
_STORED = tuple(name for name in _FIELDS if name != "held")  # (`held` is stored only when not empty)


def _earned(stored: list[Any]) -> EarnedPerk:
    pid, perk, t = stored
    return pid, perk, datetime.fromisoformat(t)


class StateSummary(msgspec.Struct, frozen=True):
    """What a worker learns of each customer it receives with a partition (`summarize`): where they are counted,
    when they are next due, and how far their clock went. Named as `CustomerState`'s fields, read straight from a
    stored state's JSON (msgspec skips the other fields without building them)."""

    customer_id: str
    clock: datetime
    due: datetime | None
    step: str | None
    relationship: str
    satisfaction: str
    formal_complaints: int


_SUMMARIZED = msgspec.json.Decoder(StateSummary)


def summarize(raw: bytes) -> StateSummary:
    """The summary of a stored state (`CustomerState.encode`, or the plain JSON of before), without decoding the rest:
    a worker that receives a million customers reads each this way (about 4 µs a state on the simulated shop's states,
    a quarter of `decode`: the difference between a restart ready in 30 s or not, bench/restore.py, issue 18)."""
    return _SUMMARIZED.decode(unpack(raw))


def _encode(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot serialize {type(value).__name__}")
