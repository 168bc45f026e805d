"""The figures of the domain brief's §4 (the policy's `operations` key): the complaint iceberg and the expected
net word of mouth."""

from __future__ import annotations

from decimal import Decimal

from engine.loyalty.policy import WordOfMouth

HAPPY = frozenset({"satisfied", "delighted"})
UNHAPPY = frozenset({"dissatisfied"})


def unhappy_per_formal_complaint(ops: WordOfMouth) -> Decimal:
    """How many unhappy customers one formal complaint stands for: most never complain, few of the rest formally."""
    return Decimal(1) / ((1 - ops.silent_unhappy_share) * ops.formal_complaint_share)


def net_word_of_mouth(satisfied: int, dissatisfied: int, ops: WordOfMouth) -> Decimal:
    """People told good things minus people told bad things: a dissatisfied customer tells about twice as many."""
    return satisfied * ops.satisfied_tell - dissatisfied * ops.dissatisfied_tell
