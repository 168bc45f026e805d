"""Perk rules in the policy (issue 19, item 1): the defaults decide byte for byte what the hard-coded table decided,
a custom rule's window, conditions and budget hold perks back with their reason, and a bad rule is named at load."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, get_args

import orjson
import pytest
import yaml
from typer.testing import CliRunner

from engine.broker import partitioner
from engine.cli import app
from engine.loyalty import DEFAULT_POLICY, DecisionEvent, Policy, PolicyError, SuppressedPerk, load_policy
from engine.loyalty.budgets import partition_of, share
from engine.loyalty.perk_rules import DEFAULT_PERK_RULES, DIMENSION_VALUES, TRIGGERS
from engine.offline.replay import Replay
from engine.offline.simulation import SimulationSpec, simulate
from schemas.construct import flat_json
from schemas.decoder import DecodeLimits
from schemas.events import Dimension, PerkGranted
from tests.unit.loyalty_builders import feedback, purchase, register, run

NOW = datetime(2026, 7, 1, tzinfo=UTC)

# Computed by this file's `_digest` on the tree before the perk rules moved into the policy (the trigger → perk table
# hard-coded in engine/loyalty/perks.py and evaluation.py): every decision as published, every customer's final state
# (its perks, cooldown memory and recent decisions with their explanations) and the perks granted and held back.
GOLDEN_DIGESTS = {
    "in_order": "bb1e0de8970a39bc416d03e1386f8501cb5bee59a7452e451539e452eacbcbbf",
    "late": "82741a4bd617fa5833f22cb297fe1e389584b7246704df93b6cd0ab626a07939",
}
GOLDEN_VERSION = "543083be5742"  # the default policy's version before the rules were in it

# The defaults, spelled out by hand as a policy file would (names left out: a rule is named after its trigger).
EXPLICIT_DEFAULTS = """
perk_rules:
  - {trigger: enters.buyer, perks: [welcome_offer]}
  - {trigger: enters.habitual, perks: [priority_service, special_offer]}
  - {trigger: enters.exclusive, perks: [early_access, tailored_service]}
  - {trigger: enters.propagandist, perks: [referral_reward, raffle_entry, participation_invite]}
  - {trigger: referral.converted, perks: [referral_reward]}
  - {trigger: satisfaction.dissatisfied, perks: [service_recovery]}
  - {trigger: relationship.hostage, perks: [service_recovery]}
  - {name: relationship.enemy, trigger: relationship.enemy, perks: service_recovery}
  - {trigger: relationship.mercenary, perks: [membership_offer]}
  - {trigger: activity.inactive, perks: [win_back_offer]}
  - {trigger: risk.at_risk, perks: [retention_offer]}
  - {trigger: permanent.true, perks: [personal_attention]}
"""


def _digest(lines: list[bytes], policy: Policy) -> tuple[str, list[DecisionEvent]]:
    decisions: list[DecisionEvent] = []
    replay = Replay(policy, DecodeLimits(currencies=policy.currencies), NOW, decisions.append, lambda _: None)
    for line in lines:
        replay.feed(line)
    replay.finish()
    digest = hashlib.sha256()
    for decision in decisions:
        digest.update(flat_json(decision) + b"\n")
    for customer_id in sorted(replay.states):
        digest.update(replay.states[customer_id].to_json() + b"\n")
    digest.update(orjson.dumps(sorted(replay.counts.perks_suppressed.items())))
    digest.update(orjson.dumps(sorted(replay.counts.perks_granted.items())))
    return digest.hexdigest(), decisions


@pytest.fixture(scope="module")
def histories() -> dict[str, list[bytes]]:
    """Every archetype over almost four years (permanence included), with duplicates and malformed lines; and the
    same lines with every tenth moved thirty on (events arriving late)."""
    lines = list(simulate(SimulationSpec(customers=600, days=1400, seed=19, duplicates=0.02, malformed=0.01)))
    late = list(lines)
    for index in range(0, len(late) - 40, 10):
        late.insert(index + 30, late.pop(index))
    return {"in_order": lines, "late": late}


@pytest.fixture(scope="module")
def explicit_defaults(tmp_path_factory: pytest.TempPathFactory) -> Policy:
    path = tmp_path_factory.mktemp("policy") / "defaults.yaml"
    path.write_text(EXPLICIT_DEFAULTS)
    return load_policy(path)


@pytest.mark.parametrize("order", ["in_order", "late"])
def test_the_default_rules_decide_byte_for_byte_what_the_hard_coded_table_decided(
    histories: dict[str, list[bytes]], explicit_defaults: Policy, order: str
) -> None:
    built_in, decisions = _digest(histories[order], DEFAULT_POLICY)
    spelled_out, _ = _digest(histories[order], explicit_defaults)
    assert built_in == spelled_out == GOLDEN_DIGESTS[order]
    # The history exercises every default rule (so the digest covers each).
    rules = {d.rule for d in decisions if d.type == "perk.granted"}
    assert rules == {rule.name for rule in DEFAULT_PERK_RULES}


def test_every_value_the_engine_classifies_is_a_known_trigger(histories: dict[str, list[bytes]]) -> None:
    """Triggers are validated against DIMENSION_VALUES: it must hold every value the classifications give."""
    assert set(DIMENSION_VALUES) == set(get_args(Dimension))
    _, decisions = _digest(histories["in_order"], DEFAULT_POLICY)
    changed = {d.rule for d in decisions if d.type == "customer.classification_changed"}
    assert len(changed) > 15
    assert changed <= TRIGGERS


def test_the_default_policy_keeps_its_version_and_any_change_to_the_rules_changes_it(
    explicit_defaults: Policy, tmp_path: Path
) -> None:
    assert DEFAULT_POLICY.version == explicit_defaults.version == GOLDEN_VERSION
    saved = tmp_path / "saved.yaml"
    saved.write_text(DEFAULT_POLICY.to_yaml())
    assert load_policy(saved) == DEFAULT_POLICY and load_policy(saved).version == GOLDEN_VERSION

    base = yaml.safe_load(EXPLICIT_DEFAULTS)["perk_rules"]
    variants: dict[str, list[dict[str, Any]]] = {
        "one rule less": base[1:],
        "two rules swapped": [base[1], base[0], *base[2:]],
        "a perk more": [{**base[0], "perks": ["welcome_offer", "raffle_entry"]}, *base[1:]],
        "renamed": [{**base[0], "name": "welcome"}, *base[1:]],
        "a condition": [{**base[0], "when": {"kind": ["final"]}}, *base[1:]],
        "a window": [{**base[0], "from": "2026-01-01"}, *base[1:]],
        "a budget": [{**base[0], "budget": {"max": 10, "per": "day"}}, *base[1:]],
        "another budget": [{**base[0], "budget": {"max": 11, "per": "day"}}, *base[1:]],
        "a budget per perk": [{**base[0], "budget": {"max": 10, "per": "day", "scope": "perk"}}, *base[1:]],
    }
    versions = {name: Policy.model_validate({"perk_rules": rules}).version for name, rules in variants.items()}
    assert GOLDEN_VERSION not in versions.values()
    assert len(set(versions.values())) == len(variants), versions
    # The same rules written differently are the same policy: a date is its midnight UTC, a lone value a list of one.
    a = {**base[0], "from": "2026-01-01", "when": {"kind": "final"}}
    b = {**base[0], "from": "2026-01-01T01:00:00+01:00", "when": {"kind": ["final"]}}
    assert Policy.model_validate({"perk_rules": [a]}).version == Policy.model_validate({"perk_rules": [b]}).version


@pytest.mark.parametrize(
    ("rules", "said"),
    [
        ("- {trigger: enters.vip, perks: [welcome_offer]}",
         "perk_rules.0.trigger: unknown trigger 'enters.vip' (known: enters.<step> for a step of possible, potential"),
        ("- {trigger: enters.buyer, perks: [welcome_offer]}\n- {trigger: risk.high, perks: [welcome_offer]}",
         "perk_rules.1.trigger: unknown trigger 'risk.high' (known: "),
        ("- {trigger: enters.buyer, perks: [welcome_offer, free_lunch]}", "perk_rules.0.perks.1: Input should be"),
        ("- {trigger: enters.buyer, perks: []}", "perk_rules.0.perks: "),
        ("- {trigger: enters.buyer, perks: [welcome_offer, welcome_offer]}",
         "perk_rules.0.perks: welcome_offer listed more than once"),
        ("- {trigger: enters.buyer, perks: [welcome_offer], colour: red}",
         "perk_rules.0.colour: Extra inputs are not permitted"),
        ("- {trigger: enters.buyer, perks: [welcome_offer], when: {kind: [vip]}}",
         "perk_rules.0.when.kind.0: Input should be 'final', 'external' or 'internal'"),
        ("- {trigger: enters.buyer, perks: [welcome_offer], when: {tier: [gold]}}",
         "perk_rules.0.when.tier: Extra inputs are not permitted"),
        ("- {trigger: enters.buyer, perks: [welcome_offer], from: 2025-12-01 10:00:00}",
         "perk_rules.0.from: a time needs its UTC offset"),
        ("- {trigger: enters.buyer, perks: [welcome_offer], from: 2026-01-01, to: 2025-12-01}",
         "perk_rules.0: the window must end after it starts (from 2026-01-01 to 2025-12-01)"),
        ("- {trigger: enters.buyer, perks: [welcome_offer], budget: {max: 100, per: fortnight}}",
         "perk_rules.0.budget.per: Input should be 'day', 'week', 'month' or 'year'"),
        ("- {trigger: enters.buyer, perks: [welcome_offer], budget: {max: 0, per: day}}",
         "perk_rules.0.budget.max: Input should be greater than 0"),
        ("- {trigger: enters.buyer, perks: [welcome_offer], budget: {per: day}}",
         "perk_rules.0.budget.max: Field required"),
        ("- {trigger: enters.buyer, perks: [welcome_offer]}\n- {trigger: enters.buyer, perks: [raffle_entry]}",
         "perk_rules: two rules are named 'enters.buyer' (0 and 1)"),
    ],
)  # fmt: skip
def test_a_bad_rule_fails_at_load_in_one_line_naming_its_key(tmp_path: Path, rules: str, said: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("perk_rules:\n" + "\n".join(f"  {line}" for line in rules.splitlines()) + "\n")
    with pytest.raises(PolicyError) as raised:
        load_policy(path)
    message = str(raised.value)
    assert message.startswith(f"invalid policy file {path}: ") and "\n" not in message
    assert said in message


# ---- the example: priority_service to final customers entering habitual in December, 100 a month ----------

EXAMPLE = """
perk_rules:
  - name: december_priority
    trigger: enters.habitual
    perks: [priority_service]
    when: {kind: [final]}
    from: 2025-12-01
    to: 2026-01-01
    budget: {max: 100, per: month}
  - {trigger: enters.habitual, perks: [special_offer]}
  - {trigger: enters.buyer, perks: [welcome_offer]}
"""


def example_lines(customers: dict[str, tuple[str, datetime]]) -> list[bytes]:
    """Each customer registered with their kind, then four purchases 20 days apart, the fourth (the one that makes
    them habitual) at the time given; every event in time order."""
    events: list[tuple[datetime, dict[str, Any]]] = []
    for customer_id, (kind, habitual_at) in customers.items():
        first = habitual_at - timedelta(days=60)
        events.append((first - timedelta(days=1), {"type": "customer.registered", "kind": kind}))
        for n in range(4):
            purchase = {"type": "purchase.completed", "order_id": f"o-{customer_id}-{n}", "amount": "20.00"}
            events.append((first + timedelta(days=20 * n), {**purchase, "currency": "EUR"}))
        for number, (moment, event) in enumerate(events[-5:]):
            occurred_at = moment.isoformat().replace("+00:00", "Z")
            event.update(event_id=f"e-{customer_id}-{number}", customer_id=customer_id, occurred_at=occurred_at)
    events.sort(key=lambda item: (item[0], item[1]["customer_id"]))
    return [orjson.dumps({**event, "schema_version": 1}) for _, event in events]


def _replay(
    lines: list[bytes], policy: Policy, partitions: int = 8
) -> tuple[Replay, list[DecisionEvent], list[SuppressedPerk]]:
    decisions: list[DecisionEvent] = []
    replay = Replay(
        policy, DecodeLimits(currencies=policy.currencies), NOW, decisions.append, lambda _: None, partitions
    )
    held: list[SuppressedPerk] = []
    replay.on_suppressed = held.append
    for line in lines:
        replay.feed(line)
    replay.finish()
    return replay, decisions, held


def _december(n: int, offset: int = 0) -> Iterator[datetime]:
    for i in range(n):
        yield datetime(2025, 12, 2, tzinfo=UTC) + timedelta(minutes=97 * (i + offset))


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Policy:
    path = tmp_path_factory.mktemp("policy") / "example.yaml"
    path.write_text(EXAMPLE)
    return load_policy(path)


@pytest.fixture(scope="module")
def shop() -> dict[str, tuple[str, datetime]]:
    return december_shop()


def december_shop() -> dict[str, tuple[str, datetime]]:
    """The example's shop: final and external customers entering habitual in December, final and internal ones in
    November, final ones on January 1st (tests/integration/test_budgets.py publishes it to live workers)."""
    customers = {f"final-{i:03d}": ("final", moment) for i, moment in enumerate(_december(240))}
    customers |= {f"external-{i:02d}": ("external", moment) for i, moment in enumerate(_december(20, offset=5))}
    november = datetime(2025, 11, 3, tzinfo=UTC)
    customers |= {f"early-{i:02d}": ("final", november + timedelta(hours=7 * i)) for i in range(20)}
    customers |= {f"early-internal-{i:02d}": ("internal", november + timedelta(hours=5 * i)) for i in range(20)}
    customers |= {
        f"january-{i:02d}": ("final", datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=i)) for i in range(20)
    }
    return customers


def test_the_example_grants_priority_service_to_final_customers_in_december_within_the_budget(
    example: Policy, shop: dict[str, tuple[str, datetime]]
) -> None:
    replay, decisions, suppressed = _replay(example_lines(shop), example)
    perks = [d for d in decisions if isinstance(d, PerkGranted)]
    priority = {d.customer_id: d for d in perks if d.perk == "priority_service"}
    held = {s.customer_id: s for s in suppressed if s.perk == "priority_service"}
    assert len(held) == sum(s.perk == "priority_service" for s in suppressed)  # one each

    # Every customer still earns special_offer (the other rule of the trigger) and the welcome offer.
    assert Counter(d.perk for d in perks if d.perk != "priority_service") == {
        "special_offer": 320,
        "welcome_offer": 320,
    }
    # Final customers in December: each partition grants its share of 100 (13 for the first four of 8, 12 for the
    # others) to the first of its customers to enter habitual, and holds the rest back for the budget.
    finals = sorted((moment, c) for c, (_, moment) in shop.items() if c.startswith("final-"))
    by_partition: dict[int, list[str]] = {}
    for _, customer_id in finals:
        by_partition.setdefault(partitioner.partition_of(customer_id.encode(), 8), []).append(customer_id)
    assert sorted(by_partition) == list(range(8)) and min(len(c) for c in by_partition.values()) > 13
    expected = {c for p, listed in by_partition.items() for c in listed[: 13 if p < 4 else 12]}
    assert set(priority) == expected and len(expected) == 100
    for customer_id in {c for _, c in finals} - expected:
        why = held[customer_id].explanation
        assert held[customer_id].reason == "budget"
        assert "rule december_priority grants at most 100 grants a month across all customers" in why
        assert "spent for 2025-12" in why
    granted = priority[next(iter(expected))]
    assert granted.rule == "december_priority" and granted.occurred_at.month == 12
    assert granted.explanation == (
        "Entered the habitual step. Rule december_priority: for customers whose kind is final; "
        "from 2025-12-01 until 2026-01-01 (not included); at most 100 grants a month."
    )
    # External customers in December: held back by the condition; anyone outside December (January 1st at midnight
    # included: the window ends before it) by the window (asked
    # first, so internal customers in November are told about the window).
    for customer_id in shop:
        if customer_id.startswith("external-"):
            assert held[customer_id].reason == "condition"
            assert held[customer_id].explanation == (
                "Held back: rule december_priority gives priority_service only to customers whose kind is final; "
                "this customer's kind is external."
            )
        elif customer_id.startswith(("early-", "january-")):
            why = held[customer_id].explanation
            assert held[customer_id].reason == "window", customer_id
            assert "gives priority_service from 2025-12-01 until 2026-01-01 (not included)" in why
    assert set(held) | set(priority) == set(shop) and not set(held) & set(priority)
    # The replay counts them by reason (summary.json's perks_suppressed), the customer's view remembers why.
    assert {k: v for k, v in replay.counts.perks_suppressed.items() if k.startswith("priority_service")} == {
        "priority_service:budget": 140, "priority_service:condition": 20, "priority_service:window": 60,
    }  # fmt: skip
    remembered = [d for d in replay.states["external-00"].decisions if d["kind"] == "perk_suppressed"]
    assert [(d["perk"], d["rule"]) for d in remembered] == [("priority_service", "december_priority")]
    assert all(d.policy_version == example.version != DEFAULT_POLICY.version for d in decisions)


def test_a_worker_owning_some_partitions_grants_what_the_replay_grants_their_customers(
    example: Policy, shop: dict[str, tuple[str, datetime]]
) -> None:
    """Shares make the budget exact without partitions telling each other: the replay of only partitions 2 and 5's
    customers (what a worker owning those two sees) grants each the perks the replay of everyone grants them."""

    def granted(customers: dict[str, tuple[str, datetime]], partitions: int) -> set[tuple[str, str, str]]:
        _, decisions, _ = _replay(example_lines(customers), example, partitions)
        return {(d.customer_id, d.perk, d.perk_id) for d in decisions if isinstance(d, PerkGranted)}

    owned = {c: v for c, v in shop.items() if partitioner.partition_of(c.encode(), 8) in {2, 5}}
    everyone = granted(shop, 8)
    assert granted(owned, 8) == {g for g in everyone if g[0] in owned}
    assert granted(shop, 8) == everyone  # and deterministic
    # One partition holds the whole budget: the first 100 final customers of December, in event-time order.
    alone = {c for c, perk, _ in granted(shop, 1) if perk == "priority_service"}
    assert alone == {c for c in shop if c.startswith("final-") and int(c[-3:]) < 100}


# ---- which rule offers a perk -------------------------------------------------------------------------------------


def test_a_perk_goes_by_the_first_rule_that_holds_and_is_held_back_only_when_none_does() -> None:
    welcome = {"trigger": "enters.buyer", "perks": ["welcome_offer"]}
    rules = [
        {"name": "welcome_final", **welcome, "when": {"kind": "final"}},
        {"name": "welcome_external", **welcome, "when": {"kind": "external"}},
    ]
    policy = Policy.model_validate({"perk_rules": rules})
    for kind, rule in (("final", "welcome_final"), ("external", "welcome_external")):
        _, outcomes = run([register("c", 0, kind=kind), purchase("c", 1)], policy)
        granted = [(e.perk, e.rule) for e in outcomes[1].emitted if isinstance(e, PerkGranted)]
        assert granted == [("welcome_offer", rule)] and outcomes[1].suppressed == ()
    _, outcomes = run([register("c", 0, kind="internal"), purchase("c", 1)], policy)
    (held,) = outcomes[1].suppressed
    assert (held.perk, held.rule, held.reason) == ("welcome_offer", "welcome_final", "condition")
    assert not [e for e in outcomes[1].emitted if isinstance(e, PerkGranted)]


def test_a_later_trigger_of_the_same_evaluation_gives_a_perk_an_earlier_one_held_back() -> None:
    """A complaint makes a buyer dissatisfied and an enemy at once: satisfaction's rule (internal customers only) holds
    service_recovery back, relationship's gives it; one perk, no suppression."""
    rules = [
        {"name": "internal_recovery", "trigger": "satisfaction.dissatisfied", "perks": ["service_recovery"],
         "when": {"kind": ["internal"]}},
        {"trigger": "relationship.enemy", "perks": ["service_recovery"]},
    ]  # fmt: skip
    complaint = {"csat": 1, "expectation": "below", "complaint": True, "channel": "support"}
    events = [register("c", 0), purchase("c", 1), feedback("c", 2, **complaint)]
    _, outcomes = run(events, Policy.model_validate({"perk_rules": rules}))
    changes = {e.rule for e in outcomes[2].emitted if e.type == "customer.classification_changed"}
    assert {"satisfaction.dissatisfied", "relationship.enemy"} <= changes
    granted = [(e.perk, e.rule) for e in outcomes[2].emitted if isinstance(e, PerkGranted)]
    assert granted == [("service_recovery", "relationship.enemy")] and outcomes[2].suppressed == ()


def test_volume_and_referral_triggers_grant_through_rules() -> None:
    """Volume is decided at midnights (caused by the sweep), a converted referral credits the referrer: both trigger
    rules like the others."""
    policy = Policy.model_validate(
        {
            "perk_rules": [
                *yaml.safe_load(EXPLICIT_DEFAULTS)["perk_rules"],
                {"name": "big_spender", "trigger": "volume.high", "perks": ["special_offer"]},
                {"name": "referral_raffle", "trigger": "referral.converted", "perks": ["raffle_entry"],
                 "when": {"satisfaction": ["satisfied", "delighted"]}},
            ]
        }
    )  # fmt: skip
    lines = list(simulate(SimulationSpec(customers=150, days=400, seed=3)))
    _, decisions, _ = _replay(lines, policy)
    by_rule = Counter(d.rule for d in decisions if isinstance(d, PerkGranted))
    assert by_rule["big_spender"] > 0 and by_rule["referral_raffle"] > 0
    assert all(
        d.caused_by.startswith("sweep:") and d.evidence["window_spend"] is not None
        for d in decisions
        if d.rule == "big_spender"
    )
    raffles = [d for d in decisions if d.rule == "referral_raffle"]
    assert all(d.explanation.startswith("A customer they referred made a first purchase") for d in raffles)
    assert "Rule referral_raffle: for customers whose satisfaction is satisfied or delighted." in raffles[0].explanation
    # The default referral_reward of the same conversions is still granted, under its own rule.
    assert by_rule["referral.converted"] > 0


# ---- the command --------------------------------------------------------------------------------------------------


def test_policy_show_prints_the_rules_in_words_and_yaml_that_reads_back(tmp_path: Path) -> None:
    runner = CliRunner()
    shown = runner.invoke(app, ["policy", "show", "--rules"])
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.splitlines() == [
        f"Perk rules of the loyalty policy, version {GOLDEN_VERSION}:",
        *(f"  {rule.describe()}" for rule in DEFAULT_PERK_RULES),
    ]
    assert "  enters.habitual → priority_service, special_offer" in shown.stdout.splitlines()

    example = tmp_path / "example.yaml"
    example.write_text(EXAMPLE)
    shown = runner.invoke(app, ["policy", "show", "--policy", str(example)])
    assert shown.exit_code == 0, shown.output
    assert (
        "#   december_priority: enters.habitual → priority_service; for customers whose kind is final; "
        "from 2025-12-01 until 2026-01-01 (not included); at most 100 grants a month\n"
    ) in shown.stdout
    saved = tmp_path / "saved.yaml"
    saved.write_text(shown.stdout)
    assert load_policy(saved) == load_policy(example)
    assert f"version {load_policy(example).version}" in shown.stdout.splitlines()[0]


def test_the_worker_takes_a_policy_with_budgets(tmp_path: Path) -> None:
    """The worker counts budgets (tests/unit/test_stream_budgets.py): it goes on to look for its broker."""
    from engine.broker.local import free_port

    example = tmp_path / "example.yaml"
    example.write_text(EXAMPLE)
    env = {
        "ESCALERA_POLICY_FILE": str(example),
        "ESCALERA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",  # nobody there
        "ESCALERA_BROKER_WAIT_SECONDS": "0",
        "ESCALERA_WEB_PORT": str(free_port()),
    }
    result = CliRunner().invoke(app, ["worker"], env=env)
    assert result.exit_code != 0
    assert not isinstance(result.exception, PolicyError)
    assert "ESCALERA_BOOTSTRAP_SERVERS" in str(result.exception) and "budget" not in str(result.exception)


@pytest.mark.parametrize("partitions", [1, 3])
def test_escalera_replay_shares_budgets_among_the_topics_partitions(
    tmp_path: Path, shop: dict[str, tuple[str, datetime]], partitions: int
) -> None:
    """`escalera replay` takes the partition count from ESCALERA_TOPIC_PARTITIONS, as the workers share budgets."""
    events, policy = tmp_path / "events.jsonl", tmp_path / "example.yaml"
    events.write_bytes(b"\n".join(example_lines(shop)) + b"\n")
    policy.write_text(EXAMPLE)
    env = {"ESCALERA_TOPIC_PARTITIONS": str(partitions)}
    args = ["replay", str(events), "--out", str(tmp_path / "out"), "--policy", str(policy)]
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    perks = [orjson.loads(line) for line in (tmp_path / "out" / "perks.jsonl").read_bytes().splitlines()]
    summary = orjson.loads((tmp_path / "out" / "summary.json").read_bytes())
    finals = sorted((moment, c) for c, (_, moment) in shop.items() if c.startswith("final-"))
    expected: set[str] = set()
    for p in range(partitions):
        mine = [c for _, c in finals if partition_of(c, partitions) == p]
        expected |= set(mine[: share(100, partitions, p)])
    assert {p["customer_id"] for p in perks if p["perk"] == "priority_service"} == expected
    assert len(expected) == 100
    assert summary["perks_suppressed"] == {
        "priority_service:budget": 140, "priority_service:condition": 20, "priority_service:window": 60,
    }  # fmt: skip
