"""The keys of the customer table (and of its changelog): each customer's id, and per partition one key for the
partition's perk budget ledger (engine/loyalty/budgets.py) and one for the version of the policy its customers were
last evaluated under (engine/stream/switch.py).

A partition's key starts with a NUL byte, which no customer id holds (an id is printable: `schemas.events.Id`, and the
decoder refuses any other), so the two never meet. It is written to the changelog partition it names, whatever
partition its bytes would hash to: whoever reads the table as customers (the worker learning a partition's customers,
`escalera bootstrap`'s checks, the read-back of the changelog) leaves it out with `is_partition_key`.
"""

from __future__ import annotations

PARTITION_PREFIX = b"\x00"  # every key of a partition's own (no customer id starts with it)
LEDGER_PREFIX = PARTITION_PREFIX + b"budget/"
POLICY_PREFIX = PARTITION_PREFIX + b"policy/"


def ledger_key(partition: int) -> bytes:
    """The key under which partition `partition`'s budget ledger is kept, in that partition of the table."""
    return LEDGER_PREFIX + str(partition).encode()


def is_ledger_key(key: bytes) -> bool:
    """Whether a key of the table is a budget ledger's, not a customer's."""
    return key.startswith(LEDGER_PREFIX)


def policy_key(partition: int) -> bytes:
    """The key under which the version of the policy partition `partition`'s customers were last evaluated under is
    kept, in that partition of the table."""
    return POLICY_PREFIX + str(partition).encode()


def is_partition_key(key: bytes) -> bool:
    """Whether a key of the table is one of a partition's own (its ledger, its policy version), not a customer's."""
    return key.startswith(PARTITION_PREFIX)
