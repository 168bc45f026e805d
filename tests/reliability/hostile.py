"""Hostile input for the worker's Kafka edge: a seeded, deterministic mix of a simulated shop's events and payloads
crafted to be refused, each labelled with what the generator meant it to be.

`hostile_stream()` returns the records in publishing order. A record the generator meant to be bad carries the
rejection reasons it may plausibly get (`expected`); a record meant to be valid carries none and must be applied.
Valid events the generator adds (`h-…` customers, one event each) are as odd as the contract allows: unknown extra
fields, duplicated keys whose last value is good, exactly the size limit, nesting at the parser's limit, unusual
identifiers, unkeyed or wrongly keyed records (the worker reroutes those), records on another inbound topic.

Most bad payloads spoil a recent shop event, so they land in real customers' partitions between their events. Many
keep that event's id and would be a mere redelivery if wrongly accepted: the test's record-by-record check against
`expected`, not the state comparison, is what catches a decoder that accepts garbage. The known issues (`known_issue`)
decode, when accepted, to exactly the event they spoil, so today's acceptance changes no state.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import orjson

from engine.offline.simulation import SimulationSpec, simulate

SEED = 20260704
SHOP_CUSTOMERS = 300
SHOP_DAYS = 365
SIZE_LIMIT = 64 * 1024  # ESCALERA_MAX_EVENT_BYTES' default, which the test leaves as it is

TopicName = Literal["purchases", "feedback", "customers"]
TOPICS: tuple[TopicName, ...] = ("purchases", "feedback", "customers")
ROUTED: Literal["routed"] = "routed"
"""As a record key: keyed the way `escalera publish` keys the line (by its customer_id, else unkeyed)."""

Event = dict[str, Any]
Made = tuple[bytes | None, frozenset[str]]


@dataclass(frozen=True)
class Payload:
    """One record to publish, and what the generator meant by it."""

    value: bytes | None  # None: a record without a value (a tombstone)
    category: str
    expected: frozenset[str]  # plausible rejection reasons; empty: a valid event the worker must apply
    topic: TopicName | None = None  # None: the topic `escalera publish` routes the line to
    key: bytes | Literal["routed"] | None = ROUTED  # None: unkeyed
    known_issue: str | None = None  # the expected reasons are the right ones, but the decoder is known to differ

    @property
    def valid(self) -> bool:
        return not self.expected

    @property
    def line(self) -> bytes:
        """What `escalera replay` reads for this record (a tombstone is an empty payload)."""
        return self.value or b""


def reasons(*names: str) -> frozenset[str]:
    return frozenset(names)


VALID = reasons()
INVALID_JSON = reasons("invalid_json")
INVALID_FIELD = reasons("invalid_field")

# ---- what makes a field wrong ----------------------------------------------------------------------------------

REQUIRED = {
    "purchase.completed": ("order_id", "amount", "currency"),
    "purchase.refunded": ("order_id", "amount", "currency"),
    "customer.interest_shown": ("signal",),
    "feedback.received": ("channel",),
}
COMMON = ("type", "event_id", "customer_id", "occurred_at", "schema_version")
WRONG_VALUES: dict[str, tuple[bytes, ...]] = {  # JSON values of a wrong type or out of range, by field
    "event_id": (b"5", b"5.5", b"true", b"[]", b"{}", b'["e-1"]', b"null"),
    "customer_id": (b"5", b"-1", b"false", b"[]", b'{"id":"c-1"}', b"null"),
    "order_id": (b"42", b"true", b"[]", b"{}", b"null"),
    "referred_by": (b"7", b"true", b"[]", b"{}"),
    "occurred_at": (b"1767225600", b"1767225600.5", b"true", b"[]", b"{}", b"null"),
    "amount": (b"true", b"false", b"[]", b"{}", b"null", b'"abc"', b'"5 EUR"', b'"1,5"', b'"0x10"'),
    "kind": (b'"vip"', b"5", b"[]", b"null"),
    "traits": (b"5", b'"yes"', b"[]", b"true"),
    "signal": (b'"phone"', b"3", b"[]", b"null"),
    "channel": (b'"carrier-pigeon"', b"1", b"{}", b"null"),
    "category": (b"5", b"[]", b"{}", b"false"),
    "nps": (b"11", b"-1", b"1.5", b'"x"', b"[]", b"{}"),
    "csat": (b"0", b"6", b"2.5", b'"x"', b"[]"),
    "expectation": (b'"great"', b"1", b"[]"),
    "complaint": (b'"maybe"', b"2", b"[]", b"null"),
    "formal": (b'"maybe"', b"-1", b"{}"),
    "public": (b'"maybe"', b"3", b"[]"),
    "audience": (b"-1", b"1.5", b'"x"', b"[]", b"null"),
    "share_of_wallet": (b"1.5", b"-0.1", b'"x"', b'"0.12345"', b"[]"),
}
SPECIAL_REASON = {"type": "unknown_type", "schema_version": "unsupported_version", "currency": "unknown_currency"}
BAD_ID_TEXT = (
    "a\x00b", "a\nb", "tab\there", "\x1b[31mred", "del\x7f", "nel\x85", "zero\u200bwidth", "rtl\u202eoverride",
    "bom\ufeff", "line\u2028sep", "para\u2029sep", "nbsp\u00a0", "ideo\u3000space", "private\ue000", "\U000e0001tag",
    "", "\t", "\n",
)  # fmt: skip
NON_POSITIVE = (b"0", b"-0", b'"0"', b'"0.00"', b'"-0"', b"-5", b'"-5"', b'"-0.01"', b"-0.0001", b"-1e3", b'"-1e3"')
BAD_AMOUNTS = (
    b'""', b'"abc"', b'"5 EUR"', b'"1,5"', b"true", b"[]", b"{}", b"null", b"1e20", b'"1.23456"', b"1e-7", b"1e400",
    b'"99999999999999999999"', b'"0x10"', b'"--5"', b'"5.5.5"',
)  # fmt: skip
BAD_CURRENCIES = (
    b'"XXX"', b'"XTS"', b'"EURO"', b'"eur"', b'"Eur"', b'""', b'"BTC"', b'"USDT"', b'"JPY"', b'"CHF"', b'"SEK"',
    b'" EUR"', b'"EUR "', b"5", b"null", b"true", b'["EUR"]', b'{"code":"EUR"}', b'"\xe2\x82\xac"',
)  # fmt: skip
FUTURE = ("2100-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2999-06-15T12:00:00+14:00", "3000-01-01T00:00:00.123456Z")
BAD_TIMESTAMPS = (
    "2026-01-01T00:00:00", "2026-01-01", "yesterday", "", "2026-02-30T00:00:00Z", "2026-13-01T00:00:00Z",
    "2026-01-01T25:00:00Z", "2026-01-01T00:60:00Z", "2026-01-01T00:00:00+24:00", "2026-01-01T00:00:00 UTC",
    "Thu, 01 Jan 2026 00:00:00 GMT", "+10000-01-01T00:00:00Z", "2026-W01-1T00:00:00Z", "20260101T000000Z",
    "0000-01-01T00:00:00Z", "2026-01-01T00:00:00+5:30",
)  # fmt: skip
UNKNOWN_TYPES = (
    "x.y", "", "purchase", "purchase.completed ", " purchase.completed", "PURCHASE.COMPLETED", "Purchase.Completed",
    "purchase_completed", "purchase.completed\u0000", "purchase.*", "event.rejected", "perk.granted",
    "customer.step_changed", "customer.classification_changed", "loyalty.unknown", "customer.deleted",
    "purchase.cancelled", "feedback", "\u202epurchase.completed",
)  # fmt: skip
NON_STRING_TYPES = (b"5", b"null", b"true", b"[]", b"{}", b'["purchase.completed"]')
BAD_VERSIONS = (b"0", b"2", b"7", b"-1", b"99", b'"1"', b'"v1"', b"null", b"[1]", b'{"major":1}', b"1.5", b"2.0",
                b"false", b"100000000000000000000000000000")  # fmt: skip
INVALID_UTF8 = (b"\xff", b"\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\xc3", b"\x80",
                b"\xf4\x90\x80\x80", b"\xe2\x82", b"\xc3\x28")  # fmt: skip
NOT_OBJECTS = (b"[]", b"[{}]", b"[[]]", b"null", b"true", b"false", b"0", b"-1.5e10", b'"purchase.completed"', b'""',
               b"12345678901234567890")  # fmt: skip
EMPTY = (b"", b" ", b"\n", b"\r\n", b"\t \t", b"\x00", b"\x00\x00\x00\x00")


def _splice(event: Event, field: str, value: bytes) -> bytes:
    """The event's JSON with `field` set to the raw JSON `value` (which may be anything, even invalid)."""
    marker = "\x01@@\x01"
    return orjson.dumps({**event, field: marker}).replace(orjson.dumps(marker), value, 1)


def _with_extra(event: Event, name: str, value: bytes) -> bytes:
    """The event's JSON with an extra member `name` whose raw JSON value is `value`."""
    return orjson.dumps(event)[:-1] + b"," + orjson.dumps(name) + b":" + value + b"}"


def _padded(event: Event, size: int) -> bytes:
    """The event with an unknown `padding` member so that it is exactly `size` bytes."""
    bare = _with_extra(event, "padding", b'""')
    return _with_extra(event, "padding", b'"' + b"p" * (size - len(bare)) + b'"')


def _text(rng: random.Random, size: int) -> str:
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789-") for _ in range(size))


# ---- bad payloads: (rng, event) -> (bytes, plausible reasons) ----------------------------------------------------


def truncated(rng: random.Random, event: Event) -> Made:
    raw = orjson.dumps({**event, "note": "¡café, naïve, 東京!"}) if rng.random() < 0.3 else orjson.dumps(event)
    return raw[: rng.randrange(len(raw))], reasons("invalid_json", "invalid_utf8")  # a cut may split a character


def empty(rng: random.Random, _: Event) -> Made:
    return rng.choice(EMPTY), INVALID_JSON


def tombstone(_: random.Random, __: Event) -> Made:
    return None, INVALID_JSON


def not_an_object(rng: random.Random, event: Event) -> Made:
    raw = orjson.dumps(event)
    shapes = (
        lambda: rng.choice(NOT_OBJECTS),
        lambda: b"[" + raw + b"]",  # a batch of one
        lambda: b"[" + raw + b"," + raw + b"]",
        lambda: orjson.dumps(raw.decode()),  # the event, JSON-encoded twice
        lambda: orjson.dumps(rng.random() * 10 ** rng.randint(0, 30)),
        lambda: orjson.dumps(_text(rng, rng.randint(1, 300))),
        lambda: orjson.dumps(list(event.values())),
    )
    return rng.choice(shapes)(), reasons("not_an_object")


def invalid_utf8(rng: random.Random, event: Event) -> Made:
    junk = rng.choice(INVALID_UTF8)
    raw = orjson.dumps(event)
    choice = rng.random()
    if choice < 0.5:  # inside a string value: the JSON around it stays well formed
        field = rng.choice([name for name, value in event.items() if isinstance(value, str)])
        text = event[field]
        at = rng.randint(0, len(text))
        quoted = orjson.dumps(text)
        broken = b'"' + text[:at].encode() + junk + text[at:].encode() + b'"'
        return raw.replace(b":" + quoted, b":" + broken, 1), reasons("invalid_utf8")
    if choice < 0.7:  # anywhere
        at = rng.randrange(len(raw) + 1)
        return raw[:at] + junk + raw[at:], reasons("invalid_utf8")
    if choice < 0.8:  # in a member name
        return raw[:-1] + b',"' + junk + b'":1}', reasons("invalid_utf8")
    if choice < 0.9:  # Latin-1 where UTF-8 is expected
        return orjson.dumps({**event, "note": "café ñandú"}).decode().encode("latin-1"), reasons("invalid_utf8")
    return raw.decode().encode(rng.choice(["utf-16", "utf-32"])), reasons("invalid_utf8")  # with a byte-order mark


def invalid_json(rng: random.Random, event: Event) -> Made:
    raw = orjson.dumps(event)
    first_key = orjson.dumps(next(iter(event)))
    shapes: tuple[Callable[[], bytes], ...] = (
        lambda: raw[:-1] + b",}",  # trailing comma
        lambda: raw.replace(b'"', b"'"),  # single quotes
        lambda: raw.replace(first_key, first_key.strip(b'"'), 1),  # unquoted member name
        lambda: b"/* from the POS */" + raw,
        lambda: raw + b" // end",
        lambda: raw + rng.choice([b"x", b"}", b"]", b",", b"{", b"\x00"]),  # trailing garbage
        lambda: raw + raw,  # two events in one record
        lambda: raw + b"\n" + raw,
        lambda: raw.replace(b'":', b'" ', 1),  # a missing colon
        lambda: raw.replace(b',"', b' "', 1),  # a missing comma
        lambda: raw.replace(b'"event_id":"', b'"event_id":"\x01', 1),  # a raw control character in a string
        lambda: raw.replace(b'"event_id":"', b'"event_id":"line\nbreak', 1),
        lambda: raw.replace(b'"event_id":"', b'"event_id":"\\x41', 1),  # an escape JSON does not have
        lambda: raw.replace(b'"event_id":"', b'"event_id":"\\ud800', 1),  # a lone surrogate
        lambda: raw.replace(b'"event_id":"', b'"event_id":"\\udc00\\ud800', 1),
        lambda: b"\xef\xbb\xbf" + raw,  # a UTF-8 byte-order mark
        lambda: raw.replace(b'"schema_version":1', b'"schema_version":0x1', 1),
        lambda: raw.replace(b'"schema_version":1', b'"schema_version":01', 1),
        lambda: raw.replace(b'"schema_version":1', b'"schema_version":+1', 1),
        lambda: raw[:-1] + b',"x":undefined}',
        lambda: raw[:-1] + b',"x":None}',
        lambda: raw[:-1] + b',"x":True}',
        lambda: raw[:-1] + b',"x":.5}',
        lambda: raw[:-1] + b',"x":1.}',
        lambda: raw[:-1] + b',"x":-}',
        lambda: b"{" + raw,
        lambda: raw.replace(b"{", b"{{", 1),
        lambda: b"{'type': 'purchase.completed'}",
        lambda: raw.replace(b":", b"=", 1),
    )
    return rng.choice(shapes)(), INVALID_JSON


def nan_or_infinity(rng: random.Random, event: Event) -> Made:
    token = rng.choice([b"NaN", b"Infinity", b"-Infinity"])
    if event["type"] == "feedback.received" and rng.random() < 0.6:
        return _splice(event, rng.choice(["nps", "csat", "audience", "share_of_wallet"]), token), INVALID_FIELD
    if "amount" in event and rng.random() < 0.6:
        return _splice(event, "amount", rng.choice([token, b'"NaN"', b'"Infinity"', b'"-Infinity"'])), INVALID_FIELD
    return _with_extra(event, rng.choice(["score", "ratio", "x"]), token), INVALID_JSON  # a member nobody reads


def non_positive_amount(rng: random.Random, event: Event) -> Made:
    return _splice(event, "amount", rng.choice(NON_POSITIVE)), INVALID_FIELD


def bad_amount(rng: random.Random, event: Event) -> Made:
    if rng.random() < 0.1:  # a number longer than any parser's integers
        return _splice(event, "amount", b"9" * rng.randint(400, 5000)), reasons("invalid_field", "invalid_json")
    return _splice(event, "amount", rng.choice(BAD_AMOUNTS)), INVALID_FIELD


def unknown_currency(rng: random.Random, event: Event) -> Made:
    return _splice(event, "currency", rng.choice(BAD_CURRENCIES)), reasons("unknown_currency")


def future_timestamp(rng: random.Random, event: Event) -> Made:
    if rng.random() < 0.5:
        moment = rng.choice(FUTURE)
    else:
        moment = f"{rng.randint(2100, 9998)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T12:00:00Z"
    return orjson.dumps({**event, "occurred_at": moment}), reasons("timestamp_in_future")


def bad_timestamp(rng: random.Random, event: Event) -> Made:
    return orjson.dumps({**event, "occurred_at": rng.choice(BAD_TIMESTAMPS)}), INVALID_FIELD


def unknown_type(rng: random.Random, event: Event) -> Made:
    roll = rng.random()
    if roll < 0.2:
        return _splice(event, "type", rng.choice(NON_STRING_TYPES)), reasons("unknown_type")
    if roll < 0.3:
        return orjson.dumps({**event, "type": _text(rng, rng.randint(129, 2000))}), reasons("unknown_type")
    if roll < 0.4:  # Escalera's own output fed back to it
        letter = {"type": "event.rejected", "event_id": "rej-1", "customer_id": event["customer_id"],
                  "occurred_at": event["occurred_at"], "schema_version": 1, "reason": "invalid_json",
                  "message": "x", "payload": "{}", "payload_truncated": False, "payload_size": 2,
                  "source": {"topic": "purchases", "partition": 0, "offset": 1}}  # fmt: skip
        return orjson.dumps(letter), reasons("unknown_type")
    return orjson.dumps({**event, "type": rng.choice(UNKNOWN_TYPES)}), reasons("unknown_type")


def wrong_version(rng: random.Random, event: Event) -> Made:
    return _splice(event, "schema_version", rng.choice(BAD_VERSIONS)), reasons("unsupported_version")


def missing_field(rng: random.Random, event: Event) -> Made:
    field = rng.choice([*COMMON, *REQUIRED.get(event["type"], ())])
    return orjson.dumps({k: v for k, v in event.items() if k != field}), reasons("missing_field")


def wrong_type(rng: random.Random, event: Event) -> Made:
    fields = [field for field in event if field in WRONG_VALUES]
    fields += [f for f in ("traits", "kind") if event["type"] == "customer.registered"]
    fields += [f for f in ("nps", "complaint", "audience") if event["type"] == "feedback.received"]
    fields += [f for f in ("category",) if event["type"] == "purchase.completed"]
    field = rng.choice(sorted(set(fields)))
    return _splice(event, field, rng.choice(WRONG_VALUES[field])), INVALID_FIELD


def bad_id(rng: random.Random, event: Event) -> Made:
    field = rng.choice([f for f in ("event_id", "customer_id", "order_id", "referred_by") if f in event])
    roll = rng.random()
    if roll < 0.25:
        value = _text(rng, rng.choice([129, 130, 200, 1000, 20_000]))
    elif roll < 0.5:
        text = str(event[field])
        at = rng.randint(0, len(text))
        value = text[:at] + rng.choice([bad for bad in BAD_ID_TEXT if bad]) + text[at:]
    else:
        value = rng.choice(BAD_ID_TEXT)
    return orjson.dumps({**event, field: value}), INVALID_FIELD


def huge_string(rng: random.Random, event: Event) -> Made:
    size = rng.randint(10_000, 60_000)
    field, reason = rng.choice(
        [("customer_id", "invalid_field"), ("event_id", "invalid_field"), ("type", "unknown_type")]
        + ([("currency", "unknown_currency")] if "currency" in event else [])
        + ([("category", "invalid_field")] if event["type"] == "purchase.completed" else [])
        + ([("signal", "invalid_field")] if "signal" in event else [])
    )
    return orjson.dumps({**event, field: "é" * (size // 2) if rng.random() < 0.3 else "x" * size}), reasons(reason)


def oversized(rng: random.Random, event: Event) -> Made:
    size = rng.choice(
        [SIZE_LIMIT + 1, SIZE_LIMIT + 2, SIZE_LIMIT + rng.randint(3, 4096)] * 6 + [100_000, 250_000, 600_000]
    )
    roll = rng.random()
    if roll < 0.7:  # an otherwise valid event
        return _padded(event, size), reasons("too_large")
    if roll < 0.85:  # and broken too: the size is checked first
        return rng.randbytes(size), reasons("too_large")
    return b"[" * size, reasons("too_large")


def deep_nesting(rng: random.Random, event: Event) -> Made:
    depth = rng.choice([256, 300, 1000, 5000, 20_000])
    roll = rng.random()
    if roll < 0.25:
        raw = b"[" * depth + b"]" * depth
    elif roll < 0.45:
        raw = b'{"a":' * depth + b"1" + b"}" * depth
    elif roll < 0.6:
        raw = b"[" * depth  # never closed
    else:
        field = "traits" if event["type"] == "customer.registered" and rng.random() < 0.5 else "context"
        raw = _with_extra(event, field, b"[" * depth + b"]" * depth)
    return raw, reasons("too_large") if len(raw) > SIZE_LIMIT else INVALID_JSON


DUPLICATE_LAST_BAD: tuple[tuple[str, bytes, str], ...] = (
    ("type", b'"x.unknown"', "unknown_type"),
    ("schema_version", b"2", "unsupported_version"),
    ("customer_id", b'""', "invalid_field"),
    ("event_id", b'"a\\u0000b"', "invalid_field"),
    ("occurred_at", b'"2100-01-01T00:00:00Z"', "timestamp_in_future"),
    ("occurred_at", b'"not a time"', "invalid_field"),
    ("amount", b'"-5"', "invalid_field"),
    ("currency", b'"XXX"', "unknown_currency"),
)


def duplicated_keys(rng: random.Random, event: Event) -> Made:
    """The same member twice, the last one bad: the last one counts (as for every JSON parser Escalera uses)."""
    field, value, reason = rng.choice([d for d in DUPLICATE_LAST_BAD if d[0] in event])
    return orjson.dumps(event)[:-1] + b"," + orjson.dumps(field) + b":" + value + b"}", reasons(reason)


def random_bytes(rng: random.Random, _: Event) -> Made:
    return rng.randbytes(rng.randint(1, 2000)), reasons("invalid_utf8", "invalid_json", "not_an_object")


def random_ascii(rng: random.Random, _: Event) -> Made:
    alphabet = '{}[]":,0123456789.-+eE truefalsnNaI\\/abc'
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 400))).encode(), reasons(
        "invalid_json", "not_an_object"
    )


# Known issues: the reasons given are the right ones (what the published JSON Schemas say), the decoder differs.
CONTRACT_LENIENCE = "the decoder (pydantic, lax mode) accepts what the published JSON Schema forbids"
OVERFLOW = "a timestamp whose offset overflows once converted to UTC is rejected as invalid_json"


def lenient_values(rng: random.Random, event: Event) -> Made:
    """Values the published schemas forbid; the same instant and the same amount, so acceptance changes nothing."""
    moment = datetime.fromisoformat(event["occurred_at"])
    options: list[tuple[str, bytes, str]] = [
        ("schema_version", b"true", "unsupported_version"),
        ("schema_version", b"0.99999999999999999999", "unsupported_version"),
        ("occurred_at", orjson.dumps(str(int(moment.timestamp()))), "invalid_field"),  # epoch seconds, as a string
    ]
    if "amount" in event:
        whole, _, cents = event["amount"].partition(".")
        arabic = event["amount"].translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))  # Arabic-Indic digits
        if len(whole) > 1:
            options.append(("amount", orjson.dumps(f"{whole[0]}_{whole[1:]}.{cents}"), "invalid_field"))  # 3_7.21
        options.append(("amount", orjson.dumps(arabic), "invalid_field"))
        options.append(("amount", orjson.dumps(f"+{event['amount']}"), "invalid_field"))
    if event["type"] == "feedback.received":
        options.append(("complaint", b'"yes"' if event.get("complaint") else b'"no"', "invalid_field"))
    field, value, reason = rng.choice(options)
    return _splice(event, field, value), reasons(reason)


def offset_overflow(rng: random.Random, event: Event) -> Made:
    moment = rng.choice(["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", "9999-12-31T23:00:00-01:00"])
    return orjson.dumps({**event, "occurred_at": moment}), INVALID_FIELD


Maker = Callable[[random.Random, Event], Made]
BAD: dict[str, tuple[int, Maker, str | None]] = {  # category: (how many, maker, known issue)
    "truncated": (800, truncated, None),
    "empty": (100, empty, None),
    "tombstone": (40, tombstone, None),
    "not_an_object": (500, not_an_object, None),
    "invalid_utf8": (800, invalid_utf8, None),
    "invalid_json": (800, invalid_json, None),
    "nan_or_infinity": (400, nan_or_infinity, None),
    "non_positive_amount": (600, non_positive_amount, None),
    "bad_amount": (300, bad_amount, None),
    "unknown_currency": (600, unknown_currency, None),
    "future_timestamp": (500, future_timestamp, None),
    "bad_timestamp": (500, bad_timestamp, None),
    "unknown_type": (600, unknown_type, None),
    "wrong_version": (500, wrong_version, None),
    "missing_field": (700, missing_field, None),
    "wrong_type": (700, wrong_type, None),
    "bad_id": (800, bad_id, None),
    "huge_string": (150, huge_string, None),
    "oversized": (100, oversized, None),
    "deep_nesting": (300, deep_nesting, None),
    "duplicated_keys": (300, duplicated_keys, None),
    "random_bytes": (250, random_bytes, None),
    "random_ascii": (200, random_ascii, None),
    "lenient_values": (40, lenient_values, CONTRACT_LENIENCE),
    "offset_overflow": (20, offset_overflow, OVERFLOW),
}
NEEDS_AMOUNT = {"non_positive_amount", "bad_amount", "unknown_currency"}
KNOWN_ISSUE_PLACEMENT = {"lenient_values"}  # spoil shop events only, published where `escalera publish` puts them


# ---- valid but odd events of fresh customers -------------------------------------------------------------------

ODD_IDS = (
    "h-ünïcødé-{n}", "h-東京-{n}", "h-emoji-😀-{n}", "h-with space-{n}", "h-\u0897-newer-unicode-{n}",
    "h-quote\"and\\backslash-{n}", "h-{n}-" + "x" * 130, "h-<script>-{n}", "h-'; DROP TABLE customers;--{n}",
)  # fmt: skip


class _Fresh:
    """Valid events of new customers (`h-…`), one event each, as odd as the contract allows."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.count = 0

    def event(self, at: datetime, customer: str | None = None) -> Event:
        self.count += 1
        n = self.count
        customer = customer or f"h-{n:05d}"
        base: Event = {"event_id": f"h-e-{n}", "customer_id": customer, "occurred_at": _stamp(at), "schema_version": 1}
        kind = self.rng.choice(["customer.registered", "customer.interest_shown", "purchase.completed"])
        if kind == "customer.registered":
            return {"type": kind, **base, "kind": self.rng.choice(["final", "external"]),
                    "traits": {"has_need": True, "can_afford": self.rng.random() < 0.5}}  # fmt: skip
        if kind == "customer.interest_shown":
            return {"type": kind, **base, "signal": self.rng.choice(["cart", "wishlist", "quote_request"])}
        return {"type": kind, **base, "order_id": f"h-o-{n}", "amount": f"{self.rng.uniform(1, 300):.2f}",
                "currency": self.rng.choice(["EUR", "USD", "GBP"])}  # fmt: skip

    def unregistered(self, at: datetime) -> Event:
        """A registration or an interest, not a purchase: for the rerouted records, which the worker applies when
        they come back from its internal topic, outside its event-time merge (at an early time, the state such an
        event gives its customer is the same wherever it is applied)."""
        while True:
            event = self.event(at)
            if event["type"] != "purchase.completed":
                return event


def _stamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def odd_valid(rng: random.Random, fresh: _Fresh, now: datetime, early: datetime, shop_ids: list[str]) -> Payload:
    """One valid event of a new customer, odd in one way; `now` is the shop's latest event time so far."""
    category = rng.choice(
        ["extra_fields", "duplicated_keys_last_good", "at_size_limit", "nesting_at_limit", "odd_ids",
         "lenient_but_allowed", "pretty_printed", "unkeyed", "wrong_key", "wrong_topic"]
    )  # fmt: skip
    if category == "unkeyed":  # rerouted by the worker, applied when it comes back: an early time keeps it harmless
        return Payload(orjson.dumps(fresh.unregistered(early)), category, VALID, key=None)
    if category == "wrong_key":
        key = rng.choice([rng.choice(shop_ids).encode(), b"\xff\xfe", b"", b"k" * 10_000, b"other\x00key"])
        return Payload(orjson.dumps(fresh.unregistered(early)), category, VALID, key=key)
    event = fresh.event(now)
    raw = orjson.dumps(event)
    if category == "extra_fields":
        extras = {"source": "pos-7", "tags": ["a", None, 1.5, {"deep": [True]}], "note": "¡hola! 東京 😀",
                  "customer": {"customer_id": "somebody-else"}, "amount_cents": 4200, "x" * 200: None}  # fmt: skip
        raw = orjson.dumps({**event, **dict(rng.sample(sorted(extras.items()), rng.randint(1, len(extras))))})
    elif category == "duplicated_keys_last_good":
        field, value, _ = rng.choice([d for d in DUPLICATE_LAST_BAD if d[0] in event])
        raw = b"{" + orjson.dumps(field) + b":" + value + b"," + raw[1:]
    elif category == "at_size_limit":
        raw = _padded(event, SIZE_LIMIT - rng.choice([0, 0, 1, 100]))
    elif category == "nesting_at_limit":
        depth = rng.randint(100, 199)
        raw = _with_extra(event, "context", b"[" * depth + b"]" * depth)
    elif category == "odd_ids":
        raw = orjson.dumps({**event, "customer_id": rng.choice(ODD_IDS).format(n=fresh.count)[:128]})
    elif category == "lenient_but_allowed":  # numbers for amounts, offsets, fractions of seconds, escapes
        moment = datetime.fromisoformat(event["occurred_at"])
        offset = timedelta(hours=rng.choice([5, -3, 14]), minutes=rng.choice([0, 30]))
        changed = {**event, "occurred_at": (moment + offset).replace(tzinfo=None).isoformat() + ".000001"}
        raw = orjson.dumps(changed).replace(b'.000001"', b".000000" + _offset(offset).encode() + b'"', 1)
        if "amount" in event:
            raw = raw.replace(orjson.dumps(event["amount"]), event["amount"].encode(), 1)
        raw = raw.replace(b'"h-e-', b'"h\\u002de-', 1)
    elif category == "pretty_printed":
        raw = orjson.dumps(event, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    elif category == "wrong_topic":
        routed = {"purchase": "purchases", "feedback": "feedback"}.get(event["type"].split(".")[0], "customers")
        return Payload(raw, category, VALID, topic=rng.choice([t for t in TOPICS if t != routed]))
    return Payload(raw, category, VALID)


def _offset(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


# ---- the stream ------------------------------------------------------------------------------------------------


def hostile_stream(seed: int = SEED, customers: int = SHOP_CUSTOMERS, odd_valid_events: int = 400) -> list[Payload]:
    """The shop's events, with every bad payload of `BAD` and `odd_valid_events` odd valid ones mixed in."""
    rng = random.Random(seed)
    shop = list(simulate(SimulationSpec(customers, SHOP_DAYS, seed, duplicates=0.02)))
    events: list[Event] = [orjson.loads(line) for line in shop]
    early = min(datetime.fromisoformat(e["occurred_at"]) for e in events) - timedelta(days=30)
    shop_ids = sorted({e["customer_id"] for e in events})
    fresh = _Fresh(rng)
    plan = [name for name, (count, _, _) in BAD.items() for _ in range(count)] + ["odd_valid"] * odd_valid_events
    rng.shuffle(plan)
    slots: list[list[str]] = [[] for _ in shop]
    for name in plan:
        slots[rng.randrange(len(shop))].append(name)

    stream: list[Payload] = []
    recent: list[Event] = []
    latest: datetime | None = None
    for line, event, extra in zip(shop, events, slots, strict=True):
        stream.append(_shop_payload(rng, line, event))
        recent = [*recent[-49:], event]
        moment = datetime.fromisoformat(event["occurred_at"])
        latest = moment if latest is None or moment > latest else latest
        for name in extra:
            if name == "odd_valid":
                stream.append(odd_valid(rng, fresh, latest, early, shop_ids))
                continue
            _, maker, issue = BAD[name]
            template = _template(rng, name, recent, fresh, latest)
            value, expected = maker(rng, template)
            stream.append(_placed(rng, Payload(value, name, expected, known_issue=issue), template))
    return stream


def _shop_payload(rng: random.Random, line: bytes, event: Event) -> Payload:
    roll = rng.random()
    if roll < 0.05:  # members the contract does not know are ignored
        extra = {"x_source": "legacy-pos", "x_meta": {"retries": 0, "tags": ["a", "b"]}, "x_note": "ünïcødé"}
        return Payload(orjson.dumps({**event, **extra}), "shop_extra_fields", VALID)
    if roll < 0.08:  # keyed by its customer, on another inbound topic: the worker orders by event time all the same
        routed = {"purchase": "purchases", "feedback": "feedback"}.get(event["type"].split(".")[0], "customers")
        return Payload(line, "shop_wrong_topic", VALID, topic=rng.choice([t for t in TOPICS if t != routed]))
    return Payload(line, "shop", VALID)


def _template(rng: random.Random, name: str, recent: list[Event], fresh: _Fresh, latest: datetime) -> Event:
    """A recent shop event to spoil (keyed to a real customer), now and then a new customer's."""
    pool = [e for e in recent if "amount" in e] if name in NEEDS_AMOUNT else recent
    if name in KNOWN_ISSUE_PLACEMENT:
        return rng.choice(recent)
    if not pool or rng.random() < 0.15:
        event = fresh.event(latest)
        while name in NEEDS_AMOUNT and "amount" not in event:
            event = fresh.event(latest)
        return event
    return rng.choice(pool)


def _placed(rng: random.Random, payload: Payload, template: Event) -> Payload:
    """Most bad records are published as `escalera publish` would; some unkeyed, wrongly keyed or elsewhere."""
    if payload.value is None:  # a tombstone needs a key
        key = rng.choice([template["customer_id"].encode(), b"\xff", b"k" * 300])
        return Payload(None, payload.category, payload.expected, topic=rng.choice(TOPICS), key=key)
    if payload.category in KNOWN_ISSUE_PLACEMENT:
        return payload
    roll = rng.random()
    topic = rng.choice(TOPICS) if rng.random() < 0.2 else None
    if roll < 0.08:
        return Payload(payload.value, payload.category, payload.expected, topic or rng.choice(TOPICS), None,
                       payload.known_issue)  # fmt: skip
    if roll < 0.15:
        key = rng.choice([b"somebody-else", b"\xff\xfe", b"", b"k" * 5000, b"tab\tkey"])
        return Payload(payload.value, payload.category, payload.expected, topic or rng.choice(TOPICS), key,
                       payload.known_issue)  # fmt: skip
    return Payload(payload.value, payload.category, payload.expected, topic, ROUTED, payload.known_issue)
