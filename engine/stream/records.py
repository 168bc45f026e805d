"""The internal topic's records: what a worker sends to the owners of partitions (itself included), in one place.

Each record is a tag byte and a body:
- a clock tick for the partition it is sent to (`Tick`): the partition's periodic turn;
- a referral credit for the referrer it is keyed by (`Credit`): applied in event-time order with the referrer's
  own events;
- a referral reversal for the referrer it is keyed by (`Reverted`: the friend's first purchase fully refunded within
  the policy's hold, engine/loyalty/revocation.py): applied like a credit;
- an inbound event that was not keyed by its customer, rerouted to the customer's partition (`Rerouted`);
- a watermark (`Watermark`): the earliest event time at which the sending worker may still emit a referral credit
  for the partitions it owns; owners of other partitions hold back their later events until it has passed
  (`engine.stream.referrals`).
The tags are part of the topic's format: a worker of this version reads what an earlier one left there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import orjson

from engine.loyalty import ReferralCredited, ReferralReverted

TICK, CREDIT, EVENT, WATERMARK, REVERTED = b"T", b"C", b"E", b"W", b"R"


@dataclass(frozen=True, slots=True)
class Tick:
    """A partition's turn: let waiting records go, follow idle time, refresh population figures."""


@dataclass(frozen=True, slots=True)
class Credit:
    """A referral credit for the customer the record is keyed by."""

    credit: ReferralCredited


@dataclass(frozen=True, slots=True)
class Reverted:
    """A referral reversal for the customer the record is keyed by."""

    reverted: ReferralReverted


@dataclass(frozen=True, slots=True)
class Rerouted:
    """An inbound event's bytes, as published, now on its customer's partition."""

    value: bytes


@dataclass(frozen=True, slots=True)
class Watermark:
    """The sender's partitions may emit no referral credit earlier than `until` (None: none before new records)."""

    partitions: tuple[int, ...]
    until: datetime | None


InternalRecord = Tick | Credit | Reverted | Rerouted | Watermark


def encode(record: InternalRecord) -> bytes:
    """The record's bytes on the internal topic."""
    if isinstance(record, Tick):
        return TICK
    if isinstance(record, Credit):
        return CREDIT + record.credit.model_dump_json().encode()
    if isinstance(record, Reverted):
        return REVERTED + record.reverted.model_dump_json().encode()
    if isinstance(record, Rerouted):
        return EVENT + record.value
    until = None if record.until is None else record.until.isoformat()
    return WATERMARK + orjson.dumps({"partitions": record.partitions, "until": until})


def decode(value: bytes) -> InternalRecord | None:
    """What `encode` wrote (None: a tag this version does not know, passed over)."""
    tag, body = value[:1], value[1:]
    if tag == TICK:
        return Tick()
    if tag == CREDIT:
        return Credit(ReferralCredited.model_validate_json(body))
    if tag == REVERTED:
        return Reverted(ReferralReverted.model_validate_json(body))
    if tag == EVENT:
        return Rerouted(body)
    if tag == WATERMARK:
        mark = orjson.loads(body)
        until = None if mark["until"] is None else datetime.fromisoformat(mark["until"])
        return Watermark(tuple(mark["partitions"]), until)
    return None
