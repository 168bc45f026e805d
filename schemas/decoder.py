"""Turn any bytes into either a valid inbound event or a rejection with a stable reason: never raises."""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from schemas.events import (
    INBOUND_TYPES,
    SCHEMA_VERSION,
    EventRejected,
    InboundEvent,
    PurchaseCompleted,
    PurchaseRefunded,
    RejectionReason,
    RejectionSource,
    inbound_adapter,
)
from schemas.fast_path import fast_decode

MAX_PAYLOAD_CHARS = 4096
"""How much of a rejected payload a dead letter keeps."""
_KNOWN_TYPES = ", ".join(sorted(INBOUND_TYPES))
_LONGEST_GUESS = 128  # a longer `type` is no typo of a known one: not compared (difflib's cost grows with length)


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """What the decoder accepts: payload size, clock skew, and (optionally) only some currencies."""

    max_bytes: int = 64 * 1024
    max_skew: timedelta = timedelta(minutes=5)
    currencies: frozenset[str] | None = None


DEFAULT_LIMITS = DecodeLimits()


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a payload was refused; `payload` keeps at most the first bytes of it, `size` its full length."""

    reason: RejectionReason
    message: str
    payload: bytes
    customer_id: str | None = None
    size: int = 0

    def to_event(self, source: RejectionSource, occurred_at: datetime) -> EventRejected:
        """The dead letter for this rejection; its id derives from the payload and where it came from."""
        where = f"{source.topic}|{source.partition}|{source.offset}|{source.line}".encode()
        event_id = "rej-" + hashlib.sha256(where + b"|" + self.payload).hexdigest()[:32]
        text = self.payload.decode("utf-8", errors="backslashreplace")
        shown = text[:MAX_PAYLOAD_CHARS]
        return EventRejected(
            event_id=event_id,
            type="event.rejected",
            customer_id=self.customer_id,
            occurred_at=occurred_at,
            schema_version=SCHEMA_VERSION,
            reason=self.reason,
            message=self.message,
            payload=shown,
            payload_truncated=len(shown) < len(text) or len(self.payload) < self.size,
            payload_size=self.size,
            source=source,
        )


def decode(
    raw: bytes | None, *, now: datetime, limits: DecodeLimits = DEFAULT_LIMITS, key: bytes | None = None
) -> InboundEvent | Rejection:
    """A valid event, or a Rejection saying why; `key` (the Kafka record key) names the customer."""
    raw = raw or b""  # a Kafka record without a value (a tombstone) is rejected as an empty payload, not a crash
    if len(raw) <= limits.max_bytes:
        event = fast_decode(raw, limits.currencies)
        if event is not None and event.occurred_at <= now + limits.max_skew:
            return event
    return decode_with_pydantic(raw, now=now, limits=limits, key=key)


def decode_with_pydantic(
    raw: bytes, *, now: datetime, limits: DecodeLimits = DEFAULT_LIMITS, key: bytes | None = None
) -> InboundEvent | Rejection:
    """`decode` with every payload validated by pydantic: the judge of rejections, and the fast path's reference."""
    try:
        if len(raw) > limits.max_bytes:
            return _reject(raw, "too_large", too_large_message(len(raw), limits), key)
        try:
            event = inbound_adapter.validate_json(raw)
        except ValidationError as error:
            return _classify(raw, error.errors(include_url=False), key)
        if (b"NaN" in raw or b"Infinity" in raw) and not _strict_json(raw):
            return _reject(raw, "invalid_json", "NaN and Infinity are not JSON numbers", key)
        if event.occurred_at > now + limits.max_skew:
            return _reject(
                raw,
                "timestamp_in_future",
                f"occurred_at: {event.occurred_at.isoformat()} is more than "
                f"{int(limits.max_skew.total_seconds())} s in the future",
                key,
            )
        if (
            limits.currencies is not None
            and isinstance(event, PurchaseCompleted | PurchaseRefunded)
            and event.currency not in limits.currencies
        ):
            return _reject(
                raw,
                "unknown_currency",
                f"currency: {event.currency} has no exchange rate in the policy "
                f"(known: {', '.join(sorted(limits.currencies))})",
                key,
            )
        return event
    except Exception as error:  # the decoder never raises: anything unforeseen is a rejection, not a crash
        return _reject(raw, "invalid_json", f"could not be decoded: {type(error).__name__}", key)


def too_large_message(size: int, limits: DecodeLimits) -> str:
    """The message of a `too_large` rejection, for callers that measured a payload without holding it."""
    return f"payload is {size} bytes, more than the limit of {limits.max_bytes}"


def _unknown_type_message(given: Any) -> str:
    """The message of an `unknown_type` rejection: the known types, and the closest one to a likely typo."""
    guess = ""
    if isinstance(given, str) and len(given) <= _LONGEST_GUESS:
        closest = difflib.get_close_matches(given.lower(), INBOUND_TYPES, n=1, cutoff=0.6)
        guess = f"; did you mean {closest[0]!r}?" if closest else ""
    return f"type: {given!r} is not an event type Escalera knows{guess} (known: {_KNOWN_TYPES})"


def _strict_json(raw: bytes) -> bool:
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    return True


def _reject(raw: bytes, reason: RejectionReason, message: str, key: bytes | None) -> Rejection:
    return Rejection(reason, message, raw[: MAX_PAYLOAD_CHARS * 4], _customer_of(raw, key), len(raw))


def _customer_of(raw: bytes, key: bytes | None) -> str | None:
    """The customer a rejected payload is about, when that can be told safely (for keying the dead letter)."""
    if key:
        name = key.decode("utf-8", errors="backslashreplace")
        return name if 0 < len(name) <= 128 and name.isprintable() else None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    customer = value.get("customer_id") if isinstance(value, dict) else None
    if isinstance(customer, str) and 0 < len(customer) <= 128 and customer.isprintable():
        return customer
    return None


def _classify(raw: bytes, errors: list[ErrorDetails], key: bytes | None) -> Rejection:
    """Map pydantic's errors to one stable reason; the message names the field."""
    first = errors[0]
    kind = first["type"]
    if kind == "json_invalid":
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            return _reject(raw, "invalid_utf8", f"payload is not UTF-8 (byte {bad.start})", key)
        return _reject(raw, "invalid_json", first["msg"], key)
    if kind in {"dict_type", "model_type", "model_attributes_type"} and not first["loc"]:
        return _reject(raw, "not_an_object", "payload must be a JSON object", key)
    if kind == "union_tag_not_found":
        return _reject(raw, "missing_field", "type: field required (a string naming the event type)", key)
    if kind == "union_tag_invalid":
        return _reject(raw, "unknown_type", _unknown_type_message(_given_type(raw)), key)
    reason, detail = _most_telling(errors)
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return _reject(raw, reason, detail + more, key)


def _most_telling(errors: list[ErrorDetails]) -> tuple[RejectionReason, str]:
    """Of several field errors, the one that explains most: version, then missing fields, then currency."""
    ranked: list[tuple[int, RejectionReason, str]] = []
    for error in errors:
        field = ".".join(str(part) for part in error["loc"][1:]) or "payload"
        if field == "schema_version" and error["type"] != "missing":
            given = error.get("input")
            ranked.append((0, "unsupported_version", f"schema_version: {given!r} is not supported (only 1)"))
        elif error["type"] == "missing":
            ranked.append((1, "missing_field", f"{field}: field required"))
        elif field == "currency" and error["type"] == "literal_error":
            ranked.append((2, "unknown_currency", f"currency: {error.get('input')!r} is not an ISO 4217 code"))
        else:
            ranked.append((3, "invalid_field", f"{field}: {_short(error)}"))
    _, reason, message = min(ranked, key=lambda item: item[0])
    return reason, message


def _short(error: ErrorDetails) -> str:
    message = error["msg"].removeprefix("Value error, ")
    return message if len(message) <= 200 else message[:197] + "..."


def _given_type(raw: bytes) -> Any:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value.get("type") if isinstance(value, dict) else None
