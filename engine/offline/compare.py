"""Two sets of customer states compared field by field: what the demo prints and the tests assert when a worker's
table must equal the offline replay of the same events."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from engine.loyalty import CustomerState


def state_differences(
    found: Mapping[str, CustomerState], expected: Mapping[str, CustomerState], ignore: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Customers whose states differ, each with its differing fields as (found, expected), or a sentence saying on
    which side it is missing; `ignore`: fields left out of the comparison."""
    differences: dict[str, Any] = {}
    for customer_id in sorted(set(found) | set(expected)):
        if customer_id not in found or customer_id not in expected:
            differences[customer_id] = "only in the worker" if customer_id in found else "only in the replay"
            continue
        a, b = _fields(found[customer_id], ignore), _fields(expected[customer_id], ignore)
        if a != b:
            differences[customer_id] = {key: (a.get(key), b.get(key)) for key in a.keys() | b.keys()
                                         if a.get(key) != b.get(key)}  # fmt: skip
    return differences


def _fields(state: CustomerState, ignore: tuple[str, ...]) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(state.to_json())
    for name in ignore:
        data.pop(name, None)
    return data
