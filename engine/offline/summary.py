"""The replay's summary: customers per step and dimension, perks, rejections, and the word-of-mouth figures."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from engine.loyalty import CustomerState, Policy
from engine.loyalty.word_of_mouth import HAPPY, UNHAPPY, net_word_of_mouth, unhappy_per_formal_complaint
from engine.offline.replay import ReplayCounts
from schemas.events import STEPS

DIMENSIONS = ("activity", "frequency", "volume", "satisfaction", "influence", "relationship", "kind", "risk")


def summary(states: Iterable[CustomerState], counts: ReplayCounts, policy: Policy, as_of: datetime) -> dict[str, Any]:
    """Counts and figures over the whole population, JSON-ready."""
    customers = list(states)
    steps = Counter(state.step or "possible" for state in customers)
    ops = policy.operations
    formal = sum(state.formal_complaints for state in customers)
    per_formal = unhappy_per_formal_complaint(ops)
    happy = sum(state.satisfaction in HAPPY for state in customers)
    unhappy = sum(state.satisfaction in UNHAPPY for state in customers)
    return {
        "as_of": as_of.isoformat(),
        "policy_version": policy.version,
        "lines": counts.lines,
        "events": counts.events,
        "duplicates_ignored": counts.duplicates,
        "late_events": counts.late,
        "customers": len(customers),
        "customers_erased": counts.erased,
        "erasure_notices": counts.erasure_notices,
        "steps": {step: steps.get(step, 0) for step in STEPS},
        **{dim: dict(sorted(Counter(str(getattr(s, dim)) for s in customers).items())) for dim in DIMENSIONS},
        "permanent": sum(state.permanent for state in customers),
        "perks_granted": dict(sorted(counts.perks_granted.items())),
        "perks_suppressed": dict(sorted(counts.perks_suppressed.items())),
        **({"perks_revoked": dict(sorted(counts.perks_revoked.items()))} if counts.perks_revoked else {}),
        "transitions": dict(sorted(counts.transitions.items())),
        "rejections": dict(sorted(counts.rejections.items())),
        "complaints": {
            "formal": formal,
            "informal": sum(state.informal_complaints for state in customers),
            "unhappy_customers_per_formal_complaint": str(per_formal.quantize(Decimal("0.1"))),
            "estimated_unhappy_customers": str((formal * per_formal).quantize(Decimal(1))),
            "explanation": (
                f"{ops.silent_unhappy_share:.0%} of unhappy customers never complain and only "
                f"{ops.formal_complaint_share:.0%} of those who do use a formal channel: each formal complaint "
                f"stands for about {per_formal:.0f} unhappy customers."
            ),
        },
        "word_of_mouth": {
            "satisfied_customers": happy,
            "dissatisfied_customers": unhappy,
            "expected_net_mentions": str(net_word_of_mouth(happy, unhappy, ops)),
            "explanation": (
                f"A satisfied customer tells about {ops.satisfied_tell} people, a dissatisfied one about "
                f"{ops.dissatisfied_tell}."
            ),
        },
    }
