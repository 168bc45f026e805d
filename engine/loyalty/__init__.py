"""The pure loyalty core: ladder, classifications and perks. It imports neither Faust nor Kafka, does no
I/O and never reads the wall clock: time is always an argument."""

from engine.loyalty.evolve import boundary_after, day_start, evolve, evolve_in_place, next_due, sweep, sweep_in_place
from engine.loyalty.outcome import DecisionEvent, Outcome, Published, ReferralCredited, ReferralReverted
from engine.loyalty.perks import SuppressedPerk
from engine.loyalty.policy import DEFAULT_POLICY, Policy, PolicyError, load_policy
from engine.loyalty.population import Population
from engine.loyalty.state import CustomerState

__all__ = [
    "DEFAULT_POLICY",
    "CustomerState",
    "DecisionEvent",
    "Outcome",
    "Policy",
    "PolicyError",
    "Population",
    "Published",
    "ReferralCredited",
    "ReferralReverted",
    "SuppressedPerk",
    "boundary_after",
    "day_start",
    "evolve",
    "evolve_in_place",
    "load_policy",
    "next_due",
    "sweep",
    "sweep_in_place",
]
