"""The keys of the customer table (and of its changelog): each customer's id, and one key per partition for the
partition's perk budget ledger (engine/loyalty/budgets.py).

A ledger key starts with a NUL byte, which no customer id holds (an id is printable: `schemas.events.Id`, and the
decoder refuses any other), so the two never meet. It is written to the changelog partition it names, whatever
partition its bytes would hash to: whoever reads the table as customers (the worker learning a partition's customers,
`escalera bootstrap`'s checks, the read-back of the changelog) leaves it out with `is_ledger_key`.
"""

from __future__ import annotations

LEDGER_PREFIX = b"\x00budget/"


def ledger_key(partition: int) -> bytes:
    """The key under which partition `partition`'s budget ledger is kept, in that partition of the table."""
    return LEDGER_PREFIX + str(partition).encode()


def is_ledger_key(key: bytes) -> bool:
    """Whether a key of the table is a budget ledger's, not a customer's."""
    return key.startswith(LEDGER_PREFIX)
