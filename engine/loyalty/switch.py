"""A policy switch (issue 20, item 2): every customer re-evaluated under a new policy at the moment it is rolled out.

Workers restarted with a new policy re-evaluate each customer of their partitions at once (engine/stream/switch.py),
not lazily at the customer's next event, which would spread a change over months: a customer the new thresholds
make habitual is habitual from the switch, with the transitions and perks that brings. `escalera whatif` predicts the
same decisions offline (`switch.jsonl`), by the same function over the replay's states.

Each customer is evaluated at their own clock (the last moment their state was brought to: an event, or a day
boundary they were due at), so no time passes in the switch itself: what time would change comes at the next event
or midnight, as before. Volume is left to the next midnight (it is classified against every partition's spends, at
midnights only). The decisions' `caused_by` is `policy:<version>`, so their ids derive from the customer, the rule, the
perk and the new policy: a switch done twice (a worker that died half-way) decides nothing new for a customer it had
re-evaluated and grants the same ids for the others.
"""

from __future__ import annotations

from engine.loyalty.budgets import BudgetLedger
from engine.loyalty.evaluation import evaluate
from engine.loyalty.evolve import next_due
from engine.loyalty.outcome import Outcome, Recorder
from engine.loyalty.policy import Policy
from engine.loyalty.state import CustomerState


def switch_cause(policy: Policy) -> str:
    """The `caused_by` of what a switch to `policy` decides."""
    return f"policy:{policy.version}"


def switch_in_place(state: CustomerState, policy: Policy, ledger: BudgetLedger | None = None) -> Outcome:
    """Re-evaluate a customer under `policy` at their own clock; `state` itself becomes the next state (`ledger`: as
    for `evolve`, where the grants are counted against the new rules' budgets)."""
    out = Recorder(ledger=ledger)
    evaluate(state, state.clock, switch_cause(policy), policy, out)
    state.due = next_due(state, policy)
    return out.outcome(state)
