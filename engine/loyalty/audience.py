"""Audiences: the customers matching filters on their dimensions, as `escalera audience` and the workers' `GET
/audiences` select them (issue 20), and the cursor that pages through them in customer-id order.

One pure module for both, so a file of views (a replay's customers.jsonl), the changelog read back and the workers'
tables are filtered alike. The dimensions are the fields of the customer view (`engine.loyalty.view`) under the same
names and values: `permanent` is `true` or `false`, `risk` is `none` or `at_risk`. A filter may take several values
(any of them); filters on several dimensions must all hold.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, get_args

from engine.errors import EscaleraError
from engine.loyalty.perk_rules import DIMENSION_VALUES
from engine.loyalty.state import CustomerState
from engine.loyalty.view import dimensions
from schemas.events import STEPS, CustomerKind

# The view's dimensions, in the view's order, with every value each can take.
FILTERS: dict[str, tuple[str, ...]] = {
    "step": tuple(STEPS),
    "activity": DIMENSION_VALUES["activity"],
    "frequency": DIMENSION_VALUES["frequency"],
    "volume": DIMENSION_VALUES["volume"],
    "satisfaction": DIMENSION_VALUES["satisfaction"],
    "influence": DIMENSION_VALUES["influence"],
    "relationship": DIMENSION_VALUES["relationship"],
    "kind": get_args(CustomerKind),
    "permanent": DIMENSION_VALUES["permanent"],
    "risk": DIMENSION_VALUES["risk"],
}
MAX_LIMIT = 1000  # customers per page at most (the HTTP API)
_CURSOR_TAG = b"a1:"  # a cursor's version: tokens are opaque to clients, and may change shape behind a new tag


class AudienceError(EscaleraError):
    """A filter, limit or cursor that cannot be used; the message names the option or parameter, in one line."""


@dataclass(frozen=True)
class Audience:
    """The values wanted per filtered dimension (a dimension left out is not filtered)."""

    wanted: Mapping[str, frozenset[str]]

    def admits(self, customer: Mapping[str, Any]) -> bool:
        """Whether a customer (a view, or `dimensions` of a state) matches every filter."""
        return all(_text(customer.get(name)) in values for name, values in self.wanted.items())

    def admits_state(self, state: CustomerState) -> bool:
        """Whether a stored state matches, without building its view (whose figures a worker need not compute)."""
        return self.admits(dimensions(state))

    def query(self) -> list[tuple[str, str]]:
        """The filters as query parameters (one per dimension, its values comma-separated), in the view's order."""
        return [(name, ",".join(sorted(self.wanted[name]))) for name in FILTERS if name in self.wanted]


EVERYONE = Audience({})


def _text(value: Any) -> str:
    """A view's value as a filter names it (`permanent` is a JSON boolean in the view, `true`/`false` here)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def parse_audience(given: Mapping[str, str | Sequence[str] | None], prefix: str = "--") -> Audience:
    """The audience the options (or query parameters, with `prefix=""`) ask for: each a comma-separated list of
    values, or several such lists (any of their values). An unknown dimension or value raises AudienceError naming
    the option and the known ones."""
    wanted: dict[str, frozenset[str]] = {}
    for name, raw in given.items():
        if raw is None:
            continue
        option = f"{prefix}{name}"
        known = FILTERS.get(name)
        if known is None:
            raise AudienceError(f"{option}: not a filter (known: {', '.join(prefix + f for f in FILTERS)})")
        lists = [raw] if isinstance(raw, str) else list(raw)
        values = [value.strip() for text in lists for value in text.split(",")]
        if not values or any(not value for value in values):
            raise AudienceError(f"{option}: give one or more values, comma-separated (known: {', '.join(known)})")
        unknown = [value for value in values if value not in known]
        if unknown:
            shown = ", ".join(repr(value) for value in dict.fromkeys(unknown))
            raise AudienceError(f"{option}: unknown value {shown} (known: {', '.join(known)})")
        wanted[name] = wanted.get(name, frozenset()) | frozenset(values)
    return Audience(wanted)


def select(customers: Iterable[Mapping[str, Any]], audience: Audience) -> list[Mapping[str, Any]]:
    """The customers (views) the audience admits, by customer id."""
    return sorted((c for c in customers if audience.admits(c)), key=lambda c: str(c["customer_id"]))


def parse_limit(raw: str | None, default: int = 100) -> int:
    """A page's size: 1 to MAX_LIMIT customers."""
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise AudienceError(f"limit: a whole number from 1 to {MAX_LIMIT} (got {raw!r})")
    return int(raw)


def encode_cursor(after: str) -> str:
    """The token a page's `next` holds: the last customer id that page went up to (URL-safe, opaque)."""
    return base64.urlsafe_b64encode(_CURSOR_TAG + after.encode()).decode().rstrip("=")


def decode_cursor(token: str | None) -> str | None:
    """The customer id a cursor continues after (None: from the first)."""
    if token is None or token == "":
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        if not raw.startswith(_CURSOR_TAG):
            raise ValueError(token)
        return raw[len(_CURSOR_TAG) :].decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise AudienceError("cursor: not a cursor this API gave (use a page's `next` as it is)") from None


@dataclass(frozen=True)
class Page:
    """One answer: customers (views, by id) after a cursor, and whether more may follow them."""

    customers: list[Mapping[str, Any]]
    more: bool


def page_of(matching: Iterable[Mapping[str, Any]], limit: int) -> Page:
    """The first `limit` of customers already in id order (more: there was one more)."""
    taken: list[Mapping[str, Any]] = []
    for customer in matching:
        if len(taken) == limit:
            return Page(taken, True)
        taken.append(customer)
    return Page(taken, False)


def merge_pages(pages: Iterable[Page], limit: int) -> tuple[list[Mapping[str, Any]], str | None]:
    """The pages of the workers (each for its own partitions, after the same cursor) as one page of at most `limit`
    by customer id, and the cursor after it (None: nothing follows). Customers of disjoint partitions never repeat;
    one answered twice (a partition moving between two answers) is kept once."""
    merged: dict[str, Mapping[str, Any]] = {}
    more = False
    for page in pages:
        more |= page.more
        for customer in page.customers:
            merged.setdefault(str(customer["customer_id"]), customer)
    ordered = [merged[customer_id] for customer_id in sorted(merged)]
    if len(ordered) > limit:
        ordered, more = ordered[:limit], True
    following = encode_cursor(str(ordered[-1]["customer_id"])) if more and ordered else None
    return ordered, following
