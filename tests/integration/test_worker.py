"""The streaming worker on the real broker: it ends where the offline replay ends, and each rule works end to end."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.broker.partitioner import partition_of
from engine.loyalty import DEFAULT_POLICY, CustomerState
from engine.loyalty.view import view
from engine.loyalty.word_of_mouth import HAPPY, UNHAPPY, net_word_of_mouth
from engine.offline.simulation import SimulationSpec, simulate
from schemas.decoder import DecodeLimits, Rejection, decode
from schemas.events import ERASED
from tests.integration.engine_harness import (
    Reference,
    WorkerProcess,
    engine_env,
    publish_lines,
    read_all,
    replay_of,
    running_workers,
    table_states,
    wait_for_states,
    wait_until,
)

PARTITIONS = 4
T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
TOKEN = "scenario-api-token-0123456789abcdef"  # the scenario's worker asks for it on its query API (issue 20)
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def _in_partition(prefix: str, partition: int) -> str:
    return next(f"{prefix}-{n}" for n in range(1000) if partition_of(f"{prefix}-{n}".encode(), PARTITIONS) == partition)


ALICE, DAVE, FRANK, ERIN = "alice-1", "dave-1", "frank-1", "erin-1"
BOB, CAROL = _in_partition("bob", 0), _in_partition("carol", 1)  # referrer and referred in different partitions


def line(kind: str, event_id: str, customer: str, day: float, **fields: Any) -> bytes:
    moment = (T0 + timedelta(days=day)).isoformat().replace("+00:00", "Z")
    event = {"type": kind, "event_id": event_id, "customer_id": customer, "occurred_at": moment, "schema_version": 1}
    return orjson.dumps({**event, **fields})


def purchase(event_id: str, customer: str, day: float, amount: str = "40.00", **fields: Any) -> bytes:
    return line("purchase.completed", event_id, customer, day, order_id=f"o-{event_id}", amount=amount,
                currency="EUR", **fields)  # fmt: skip


SCENARIO = [
    b"this is not json",
    line("customer.registered", "e-1", ALICE, 0),
    line("customer.registered", "e-2", BOB, 0),
    line("customer.registered", "e-3", DAVE, 0),
    line("purchase.completed", "e-bad-amount", ALICE, 0.5, order_id="o-x", amount="-5", currency="EUR"),
    line("loyalty.unknown", "e-bad-type", ALICE, 0.5),
    line("customer.registered", "e-4", FRANK, 1),
    line("customer.interest_shown", "e-5", ALICE, 1, signal="cart"),
    purchase("e-6", ALICE, 2),
    purchase("e-6", ALICE, 2),  # the same event delivered twice
    purchase("e-7", BOB, 3),
    purchase("e-8", DAVE, 4),
    line("customer.registered", "e-9", CAROL, 5, referred_by=BOB),
    purchase("e-10", FRANK, 6),
    purchase("e-11", CAROL, 10),  # Carol's first purchase: Bob's referral converts
    purchase("e-13", ALICE, 40),
    line("feedback.received", "e-14", ALICE, 41, channel="survey", nps=10, expectation="exceeded"),
]
LATER = [  # published once Frank's state is in the table, so his erasure has something to erase
    line("customer.erasure_requested", "e-12", FRANK, 42),
    line("customer.interest_shown", "e-15", ERIN, 200, signal="visit"),  # time moves on: Dave becomes inactive
]


@pytest.fixture(scope="module")
def scenario(bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    env = engine_env(bootstrap, PARTITIONS, ESCALERA_API_TOKEN=TOKEN)
    reference = replay_of(SCENARIO + LATER)
    publish_lines(env, SCENARIO)
    with running_workers(env, tmp_path_factory.mktemp("scenario")) as (worker,):
        wait_until(lambda: FRANK in table_states(bootstrap, env), 120, "Frank's state is in the table")
        publish_lines(env, LATER)
        wait_for_states(bootstrap, env, reference.states, 120)
        pages = {path: worker.get(path) for path in ("/metrics", "/health", "/ready")}  # open: no token
        asked = [*reference.states, FRANK, "nobody-here", "tab%09inside", "x" * 129]
        customers = {customer: get(worker, f"/customers/{customer}", BEARER) for customer in asked}
        explained = {customer: explain(worker, customer) for customer in (ALICE, "nobody-here")}
        wrong = {"without": {}, "wrong": {"Authorization": "Bearer not-the-token-0123456789"}}
        refused = {(path, how): get(worker, path, headers) for path in (f"/customers/{ALICE}", "/audiences")
                   for how, headers in wrong.items()}  # fmt: skip
        audience = audience_pages(worker, "step=occasional,propagandist,buyer", 1, BEARER)
    log = worker.log.read_text()
    on = {name: [(key, orjson.loads(value)) for key, value in read_all(bootstrap, env[f"ESCALERA_TOPIC_{name}"])]  # type: ignore[arg-type]
          for name in ("PERKS", "TRANSITIONS")}  # fmt: skip
    return {
        "pages": pages,
        "customers": customers,
        "explained": explained,
        "refused": refused,
        "audience": audience,
        "log": log,
        "env": env,
        "reference": reference,
        "states": table_states(bootstrap, env),
        "perks": [d for _, d in on["PERKS"] if d["type"] != ERASED],
        "transitions": [d for _, d in on["TRANSITIONS"] if d["type"] != ERASED],
        "notices": {name: [(key, d) for key, d in records if d["type"] == ERASED] for name, records in on.items()},
        "dead_letters": [orjson.loads(v) for _, v in read_all(bootstrap, env["ESCALERA_TOPIC_DLQ"])],  # type: ignore[arg-type]
        "changelog": read_all(bootstrap, f"{env['ESCALERA_APP_ID']}-customers-changelog"),
    }


def explain(worker: WorkerProcess, customer: str) -> subprocess.CompletedProcess[str]:
    """`escalera explain` as a user runs it, against the worker's web port."""
    command = [sys.executable, "-m", "engine.cli", "explain", customer, "--url", f"http://127.0.0.1:{worker.port}"]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ESCALERA_")}
    env = {**clean, "COLUMNS": "200", "ESCALERA_API_TOKEN": TOKEN}  # the worker asks for it: explain sends it
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)


def get(worker: WorkerProcess, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """An HTTP GET on the worker's web port with these headers (the API token): status and body."""
    request = urllib.request.Request(f"http://127.0.0.1:{worker.port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def audience_pages(worker: WorkerProcess, query: str, limit: int, headers: dict[str, str]) -> list[dict[str, Any]]:
    """Every page of `GET /audiences?<query>` asked of one worker, following `next` (asserting each is a 200)."""
    answers: list[dict[str, Any]] = []
    cursor = None
    while len(answers) < 1000:
        path = f"/audiences?{query}&limit={limit}" + ("" if cursor is None else f"&cursor={cursor}")
        status, body = get(worker, path, headers)
        assert status == 200, (worker.port, path, body)
        answers.append(orjson.loads(body))
        cursor = answers[-1]["next"]
        if cursor is None:
            return answers
    raise AssertionError(f"/audiences?{query} never ended")


def by_hand(states: dict[str, CustomerState], **wanted: set[str]) -> list[str]:
    """The ids of the replay's customers whose view holds one of the wanted values of each dimension (the filter
    written again here, not the engine's)."""
    chosen = []
    for customer, state in states.items():
        shown = view(state, DEFAULT_POLICY)
        shown["permanent"] = "true" if shown["permanent"] else "false"
        if all(shown[name] in values for name, values in wanted.items()):
            chosen.append(customer)
    return sorted(chosen)


def perks_of(scenario: dict[str, Any], customer: str) -> list[str]:
    return [p["perk"] for p in scenario["perks"] if p["customer_id"] == customer]


def test_the_worker_publishes_the_perks_the_replay_grants(scenario: dict[str, Any]) -> None:
    reference: Reference = scenario["reference"]
    assert {p["perk_id"] for p in scenario["perks"]} == reference.perk_ids
    assert Counter(p["perk_id"] for p in scenario["perks"]).most_common(1)[0][1] == 1  # none published twice


def test_a_purchase_moves_the_customer_up_the_ladder_and_earns_a_perk(scenario: dict[str, Any]) -> None:
    assert scenario["states"][ALICE].step == "occasional"
    steps = [(t["from_step"], t["to_step"]) for t in scenario["transitions"]
             if t["customer_id"] == ALICE and t["type"] == "customer.step_changed"]  # fmt: skip
    assert steps == [(None, "possible"), ("possible", "potential"), ("potential", "buyer"), ("buyer", "occasional")]
    welcome = [p for p in scenario["perks"] if p["customer_id"] == ALICE and p["perk"] == "welcome_offer"]
    assert len(welcome) == 1 and welcome[0]["rule"] == "enters.buyer" and welcome[0]["explanation"]


def test_bad_events_are_dead_lettered_with_their_reason_and_the_rest_goes_on(scenario: dict[str, Any]) -> None:
    letters = scenario["dead_letters"]
    assert sorted(d["reason"] for d in letters) == ["invalid_field", "invalid_json", "unknown_type"]
    assert all(d["payload"] and d["source"]["topic"] and d["source"]["offset"] is not None for d in letters)
    assert next(d for d in letters if d["reason"] == "invalid_field")["customer_id"] == ALICE
    assert ALICE in scenario["states"]  # events after the bad ones were applied


def test_a_redelivered_event_changes_nothing(scenario: dict[str, Any]) -> None:
    assert scenario["states"][ALICE].seen_ids.count("e-6") == 1
    assert perks_of(scenario, ALICE).count("welcome_offer") == 1


def test_a_referral_is_credited_to_a_referrer_in_another_partition(scenario: dict[str, Any]) -> None:
    bob = scenario["states"][BOB]
    assert bob.converted_referrals == 1 and bob.step == "propagandist" and bob.influence == "regular"
    assert "referral_reward" in perks_of(scenario, BOB)


def test_time_passing_makes_a_customer_inactive_and_earns_a_win_back_offer(scenario: dict[str, Any]) -> None:
    assert scenario["states"][DAVE].activity == "inactive"
    offer = next(p for p in scenario["perks"] if p["customer_id"] == DAVE and p["perk"] == "win_back_offer")
    assert offer["caused_by"].startswith("sweep:") and offer["evidence"]["days_since_last_purchase"] > 180


def test_erasure_leaves_no_state_and_a_tombstone_in_the_changelog(scenario: dict[str, Any]) -> None:
    assert FRANK not in scenario["states"]
    last = [value for key, value in scenario["changelog"] if key == FRANK.encode()][-1]
    assert last is None


def test_an_erasure_sends_the_replays_notice_to_both_outbound_topics_keyed_by_the_customer(
    scenario: dict[str, Any],
) -> None:
    notices = scenario["reference"].erasure_notices
    assert notices == [
        {
            "event_id": notices[0]["event_id"],
            "customer_id": FRANK,
            "occurred_at": (T0 + timedelta(days=42)).isoformat().replace("+00:00", "Z"),
            "schema_version": 1,
            "type": ERASED,
            "caused_by": "e-12",
        }
    ]
    for topic in ("PERKS", "TRANSITIONS"):
        assert scenario["notices"][topic] == [(FRANK.encode(), notices[0])], topic  # once, keyed by Frank's id


def simulation(customers: int, seed: int) -> list[bytes]:
    return list(simulate(SimulationSpec(customers, 365, seed, duplicates=0.02, malformed=0.01)))


def test_one_worker_ends_where_the_replay_ends(bootstrap: str, tmp_path: Path) -> None:
    lines = simulation(500, seed=5)
    reference = replay_of(lines)
    assert len(lines) >= 5000 and len(reference.states) >= 500 and reference.rejected
    env = engine_env(bootstrap, PARTITIONS)
    publish_lines(env, lines)
    with running_workers(env, tmp_path, count=1):
        wait_for_states(bootstrap, env, reference.states, 180)
    perks = read_all(bootstrap, env["ESCALERA_TOPIC_PERKS"])
    assert {orjson.loads(v)["perk_id"] for _, v in perks} == reference.perk_ids  # type: ignore[arg-type]
    letters = read_all(bootstrap, env["ESCALERA_TOPIC_DLQ"])
    got = Counter((orjson.loads(v)["reason"], orjson.loads(v)["payload"]) for _, v in letters)  # type: ignore[arg-type]
    assert got == Counter((r.reason, r.payload) for r in reference.rejected)


def with_erasures(lines: list[bytes], known: int) -> list[bytes]:
    """`lines`, then erasure requests at the last event's time: for `known` customers whose events all came before
    it (so no event of theirs ties with the request) and for one the engine never heard of."""
    limits = DecodeLimits(currencies=DEFAULT_POLICY.currencies)
    events = [
        e
        for e in (decode(line, now=datetime.now(UTC), limits=limits) for line in lines)
        if not isinstance(e, Rejection)
    ]
    end = max(event.occurred_at for event in events)
    last: dict[str, datetime] = {}
    for event in events:
        last[event.customer_id] = max(last.get(event.customer_id, event.occurred_at), event.occurred_at)
    chosen = sorted(customer for customer, moment in last.items() if moment < end)[:known]
    base = {"type": "customer.erasure_requested", "occurred_at": end.isoformat(), "schema_version": 1}
    requests = [{**base, "event_id": f"erase-{n}", "customer_id": c} for n, c in enumerate([*chosen, "never-seen"])]
    return lines + [orjson.dumps(request) for request in requests]


AUDIENCES = {  # filters asked of the two workers, and what the replay's customers must hold for them
    "step=habitual,occasional&relationship=mercenary": {"step": {"habitual", "occasional"},
                                                        "relationship": {"mercenary"}},
    "activity=inactive": {"activity": {"inactive"}},
    "satisfaction=dissatisfied,delighted&kind=final,internal": {"satisfaction": {"dissatisfied", "delighted"},
                                                                "kind": {"final", "internal"}},
}  # fmt: skip
FIGURES: list[tuple[str, int, int, float]] = []  # (query, port asked, pages, seconds): printed for the report


def test_two_workers_sharing_the_partitions_end_where_the_replay_ends(bootstrap: str, tmp_path: Path) -> None:
    lines = with_erasures(simulation(500, seed=5), known=3)  # erasures too: their notices are the replay's
    reference = replay_of(lines)
    assert len(reference.erasure_notices) == 4
    env = engine_env(bootstrap, PARTITIONS)
    publish_lines(env, lines)
    with running_workers(env, tmp_path, count=2) as workers:
        wait_for_states(bootstrap, env, reference.states, 180)
        shares = [re.findall(r"owning partitions \[([0-9, ]*)\]", w.log.read_text())[0] for w in workers]
        # the query API: either worker answers for every customer, forwarding to the owner when it is not
        answers = {(w.port, c): w.get(f"/customers/{quote(c, safe='')}") for w in workers for c in reference.states}
        # audiences: either worker asked answers with both, page by page (a small limit: many pages, both workers'
        # customers on most of them)
        audiences = {}
        for query in AUDIENCES:
            for w in workers:
                began = time.monotonic()
                audiences[(w.port, query)] = audience_pages(w, query, 7, {})
                FIGURES.append((query, w.port, len(audiences[(w.port, query)]), time.monotonic() - began))
    owners: set[str] = set()
    for (port, customer), (status, body) in answers.items():
        assert status == 200, (port, customer, body)
        found = orjson.loads(body)
        assert without_log(found) == without_log(view(reference.states[customer], DEFAULT_POLICY)), customer
        owner = answers[(workers[0].port, customer)][1]
        assert found["answered_by"] == orjson.loads(owner)["answered_by"]  # one owner, whoever was asked
        owners.add(found["answered_by"])
    assert owners == {f"http://127.0.0.1:{w.port}" for w in workers}
    assert sorted(shares) == ["0, 2", "1, 3"] or sorted(shares) == ["0, 1", "2, 3"], shares  # both did work
    for query, wanted in AUDIENCES.items():
        expected = by_hand(reference.states, **wanted)
        assert len(expected) > 7, query  # more than one page
        for w in workers:
            answers = audiences[(w.port, query)]
            ids = [c["customer_id"] for a in answers for c in a["customers"]]
            assert ids == expected, (w.port, query)  # all, each once, by id
            assert all(len(a["customers"]) == 7 for a in answers[:-1]) and answers[-1]["next"] is None
            assert {c["answered_by"] for a in answers for c in a["customers"]} == owners  # both workers' customers
            assert all(without_log(c) == without_log(view(reference.states[c["customer_id"]], DEFAULT_POLICY))
                       for a in answers for c in a["customers"])  # fmt: skip
        assert audiences[(workers[0].port, query)] == audiences[(workers[1].port, query)]  # whoever is asked
    # `escalera audience` from the live table (its changelog) selects the same customers, in JSON lines and CSV
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ESCALERA_")}
    for (query, wanted), output_format in zip(AUDIENCES.items(), ("jsonl", "csv", "jsonl"), strict=True):
        options = [part for name, values in (pair.split("=") for pair in query.split("&"))
                   for part in (f"--{name}", values)]  # fmt: skip
        began = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "engine.cli", "audience", *options, "--format", output_format],
                              capture_output=True, text=True, timeout=120,
                              env={**clean, **env})  # fmt: skip
        FIGURES.append((f"escalera audience {' '.join(options)} --format {output_format}", 0, 1,
                        time.monotonic() - began))  # fmt: skip
        assert done.returncode == 0, done.stderr
        if output_format == "csv":
            ids = [row.split(",", 1)[0] for row in done.stdout.splitlines()[1:]]
        else:
            found = [orjson.loads(line) for line in done.stdout.splitlines()]
            ids = [c["customer_id"] for c in found]
            assert all(without_log(c) == without_log(view(reference.states[c["customer_id"]], DEFAULT_POLICY))
                       for c in found)  # fmt: skip
        assert ids == by_hand(reference.states, **wanted), query
    print("\n".join(f"audience figures: {q} (port {p}): {n} pages in {t:.2f} s" for q, p, n, t in FIGURES))
    perks = [orjson.loads(v) for _, v in read_all(bootstrap, env["ESCALERA_TOPIC_PERKS"])]  # type: ignore[arg-type]
    assert {p["perk_id"] for p in perks if p["type"] != ERASED} == reference.perk_ids
    # volume is decided at midnights against every partition's spends: its transitions too are the replay's, by id
    transitions = [orjson.loads(v) for _, v in read_all(bootstrap, env["ESCALERA_TOPIC_TRANSITIONS"])]  # type: ignore[arg-type]
    assert {t["event_id"] for t in transitions} == {d.event_id for d in reference.decisions if d.type != "perk.granted"}
    # each erasure notice on both topics, as the replay makes it (an unknown customer's too), whichever worker sent it
    for published in (perks, transitions):
        notices = sorted((n for n in published if n["type"] == ERASED), key=lambda n: n["event_id"])
        assert notices == sorted(reference.erasure_notices, key=lambda n: n["event_id"])
    assert any(getattr(d, "dimension", None) == "volume" for d in reference.decisions)
    letters = {orjson.loads(v)["event_id"]: orjson.loads(v) for _, v in read_all(bootstrap, env["ESCALERA_TOPIC_DLQ"])}  # type: ignore[arg-type]
    got = Counter((letter["reason"], letter["payload"]) for letter in letters.values())
    assert got == Counter((r.reason, r.payload) for r in reference.rejected)


def test_a_worker_stopped_and_restarted_restores_its_table_and_counts_nothing_twice(
    bootstrap: str, tmp_path: Path
) -> None:
    lines = simulation(200, seed=8)
    half = len(lines) // 2
    env = engine_env(bootstrap, PARTITIONS)
    first = replay_of(lines[:half])
    publish_lines(env, lines[:half])
    with running_workers(env, tmp_path / "first"):
        wait_for_states(bootstrap, env, first.states, 120)
    whole = replay_of(lines)
    publish_lines(env, lines[half:])
    with running_workers(env, tmp_path / "second"):  # a new data directory: the table comes from the changelog
        wait_for_states(bootstrap, env, whole.states, 120)
    perks = read_all(bootstrap, env["ESCALERA_TOPIC_PERKS"])
    assert {orjson.loads(v)["perk_id"] for _, v in perks} == whole.perk_ids  # type: ignore[arg-type]


def samples(metrics: bytes, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of one metric in a /metrics page, by their sorted labels."""
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(metrics.decode())
        for sample in family.samples
        if sample.name == name
    }


def by(found: dict[tuple[tuple[str, str], ...], float], *labels: str) -> Counter[tuple[str, ...]]:
    """Sample values summed by the given labels."""
    total: Counter[tuple[str, ...]] = Counter()
    for key, value in found.items():
        named = dict(key)
        total[tuple(named[label] for label in labels)] += int(value)
    return total


def test_the_metrics_count_exactly_what_the_scenario_did(scenario: dict[str, Any]) -> None:
    status, page = scenario["pages"]["/metrics"]
    assert status == 200
    env, reference = scenario["env"], scenario["reference"]
    inbound = {env[f"ESCALERA_TOPIC_{name}"] for name in ("PURCHASES", "FEEDBACK", "CUSTOMERS")}
    consumed = by(samples(page, "escalera_events_consumed_total"), "topic", "outcome")
    on_inbound: Counter[str] = Counter()
    for (topic, outcome), n in consumed.items():
        on_inbound[outcome] += n if topic in inbound else 0
    # every published record once: the unreadable and invalid ones rejected, e-6's second delivery a duplicate
    assert sum(on_inbound.values()) == len(SCENARIO) + len(LATER)
    assert on_inbound["rejected"] == len(reference.rejected) == 3
    assert on_inbound["duplicate"] == 1
    assert by(samples(page, "escalera_dead_letters_total"), "reason") == Counter(
        (r.reason,) for r in reference.rejected
    )
    # what was published is what was counted, and the perks are the replay's
    perks = by(samples(page, "escalera_perks_total"), "perk", "outcome")
    assert {k: v for k, v in perks.items() if v and k[1] == "granted"} == Counter(
        (p["perk"], "granted") for p in scenario["perks"]
    )
    assert {outcome for (_, outcome), n in perks.items() if n} <= {"granted", "suppressed_cap", "suppressed_cooldown"}
    assert Counter(p["perk"] for p in scenario["perks"]) == Counter(
        d.perk for d in reference.decisions if d.type == "perk.granted"
    )
    transitions = {
        k: v
        for k, v in by(samples(page, "escalera_transitions_total"), "dimension", "from_value", "to_value").items()
        if v
    }
    assert transitions == Counter(
        (
            t.get("dimension", "step"),
            t.get("from_value", t.get("from_step")) or "none",
            t.get("to_value", t.get("to_step")),
        )
        for t in scenario["transitions"]
    )
    applied = sum(n for (_, outcome), n in consumed.items() if outcome in ("applied", "duplicate"))
    assert sum(samples(page, "escalera_event_lag_seconds_count").values()) == applied  # every topic, internal too
    assert sum(samples(page, "escalera_event_processing_seconds_count").values()) == applied
    assert samples(page, "escalera_erasure_notices_total") == {(): float(len(reference.erasure_notices))} == {(): 1.0}
    # the gauges: where the replay's customers stand (the erased one is gone)
    states = reference.states.values()
    steps = {k: v for k, v in by(samples(page, "escalera_customers"), "step").items() if v}
    assert steps == Counter((state.step or "none",) for state in states)
    quadrants = {k: v for k, v in by(samples(page, "escalera_customers_by_relationship"), "relationship").items() if v}
    assert quadrants == Counter((state.relationship,) for state in states)
    formal = sum(state.formal_complaints for state in states)
    assert samples(page, "escalera_formal_complaints") == {(): formal}
    happy = sum(state.satisfaction in HAPPY for state in states)
    unhappy = sum(state.satisfaction in UNHAPPY for state in states)
    assert happy and samples(page, "escalera_expected_net_word_of_mouth") == {
        (): float(net_word_of_mouth(happy, unhappy, DEFAULT_POLICY.operations))
    }
    # everything was read: no lag on any of the inbound topics' partitions, all of which this worker owns
    lag = by(samples(page, "escalera_consumer_lag_records"), "topic", "partition")
    assert set(lag) == {(topic, str(p)) for topic in inbound for p in range(PARTITIONS)}
    assert set(lag.values()) == {0}
    assert b"customer_id" not in page and ALICE.encode() not in page and BOB.encode() not in page
    # the table was restored (from an empty changelog) before the worker consumed, and is not being restored now
    assert samples(page, "escalera_table_restore_in_progress") == {(): 0.0}
    assert 0 <= samples(page, "escalera_table_restore_seconds")[()] < 60


def test_promtool_accepts_the_live_metrics_page(scenario: dict[str, Any], promtool: str) -> None:
    page = scenario["pages"]["/metrics"][1]
    checked = subprocess.run([promtool, "check", "metrics"], input=page, capture_output=True, timeout=60)
    assert checked.returncode == 0, (checked.stdout + checked.stderr).decode()


def test_health_and_readiness_answer_on_the_web_port(scenario: dict[str, Any]) -> None:
    status, body = scenario["pages"]["/health"]
    assert status == 200 and orjson.loads(body) == {"status": "alive"}
    status, body = scenario["pages"]["/ready"]
    assert status == 200 and orjson.loads(body)["ready"] is True


def without_log(view: dict[str, Any]) -> dict[str, Any]:
    """A customer's view but who answered (the recent-decision log is compared too: volume is decided on event time,
    so the worker's log equals the replay's)."""
    return {k: v for k, v in orjson.loads(orjson.dumps(view)).items() if k != "answered_by"}


def test_the_query_api_answers_what_the_replay_holds_for_each_customer(scenario: dict[str, Any]) -> None:
    customers = scenario["customers"]
    for customer, state in scenario["reference"].states.items():
        status, body = customers[customer]
        assert status == 200, (customer, body)
        assert without_log(orjson.loads(body)) == without_log(view(state, DEFAULT_POLICY)), customer
    alice = orjson.loads(customers[ALICE][1])
    assert alice["step"] == "occasional" and alice["figures"]["purchases_in_window"] == 2
    perks = [d for d in alice["recent_decisions"] if d["kind"] == "perk"]
    assert {d["perk"] for d in perks} >= {"welcome_offer"} and all(d["explanation"] for d in perks)


def test_the_query_api_refuses_unknown_erased_and_malformed_ids(scenario: dict[str, Any]) -> None:
    customers = scenario["customers"]
    assert customers["nobody-here"][0] == 404 and b"nobody-here" in customers["nobody-here"][1]
    assert customers[FRANK][0] == 404  # erased: nothing is kept, nothing is shown
    assert customers["tab%09inside"][0] == 400 and b"malformed" in customers["tab%09inside"][1]
    assert customers["x" * 129][0] == 400


def test_explain_prints_where_a_customer_stands_and_why(scenario: dict[str, Any]) -> None:
    alice, nobody = scenario["explained"][ALICE], scenario["explained"]["nobody-here"]
    assert alice.returncode == 0, alice.stderr
    assert ALICE in alice.stdout and "occasional" in alice.stdout and "welcome_offer" in alice.stdout
    decisions = orjson.loads(scenario["customers"][ALICE][1])["recent_decisions"]
    first_perk = next(d for d in decisions if d["kind"] == "perk")
    assert " ".join(first_perk["explanation"].split()) in " ".join(alice.stdout.split())
    assert nobody.returncode == 2 and "404" in nobody.stderr and "nobody-here" in nobody.stderr


def test_the_query_api_wants_the_token_and_the_operators_pages_do_not(scenario: dict[str, Any]) -> None:
    assert len(scenario["refused"]) == 4
    for (path, how), (status, body) in scenario["refused"].items():
        assert status == 401 and b"API token" in body, (path, how)
    assert all(status == 200 for status, _ in scenario["pages"].values())  # /metrics, /health, /ready: no token
    assert scenario["customers"][ALICE][0] == 200  # with it
    assert TOKEN not in scenario["log"] and TOKEN not in str(scenario["explained"][ALICE])


def test_a_single_worker_pages_an_audience_as_the_replay_selects_it(scenario: dict[str, Any]) -> None:
    states = scenario["reference"].states
    answers = scenario["audience"]
    ids = [c["customer_id"] for a in answers for c in a["customers"]]
    assert ids == by_hand(states, step={"occasional", "propagandist", "buyer"}) and len(answers) == len(ids) >= 3
    for answer in answers:
        for found in answer["customers"]:
            assert without_log(found) == without_log(view(states[found["customer_id"]], DEFAULT_POLICY))
