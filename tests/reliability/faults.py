"""What the fault tests share: a simulated shop and its replay, and the check that everything the replay decides
reached the output topics once in meaning (with how many copies arrived)."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import orjson

from engine.offline.simulation import SimulationSpec, simulate
from tests.integration.engine_harness import Reference, WorkerProcess, read_all, replay_of

PARTITIONS = 4
FAST_FAILOVER = {"ESCALERA_SESSION_TIMEOUT_SECONDS": "6"}  # a killed member leaves the group in 6 s, not 60


def shop(customers: int, seed: int) -> tuple[list[bytes], Reference]:
    lines = list(simulate(SimulationSpec(customers, 365, seed, duplicates=0.02, malformed=0.01)))
    return lines, replay_of(lines)


def published_once_each(bootstrap: str, env: dict[str, str], reference: Reference) -> dict[str, Any]:
    """Every perk the replay grants is on the perks topic, with the same customer, perk, cause and rule; no perk
    id stands for two perks; every rejected record is a dead letter. Returns how many copies arrived."""
    perks = [orjson.loads(v) for _, v in read_all(bootstrap, env["ESCALERA_TOPIC_PERKS"])]  # type: ignore[arg-type]
    meaning: dict[str, set[tuple[str, ...]]] = defaultdict(set)
    for perk in perks:
        meaning[perk["perk_id"]].add((perk["customer_id"], perk["perk"], perk["caused_by"], perk["rule"]))
    assert [pid for pid, kinds in meaning.items() if len(kinds) > 1] == []  # one id, one perk
    expected = {d.perk_id: (d.customer_id, d.perk, d.caused_by, d.rule)  # type: ignore[union-attr]
                for d in reference.decisions if d.type == "perk.granted"}  # fmt: skip
    assert {pid: next(iter(kinds)) for pid, kinds in meaning.items()} == expected  # none lost, none invented
    letters = [orjson.loads(v) for _, v in read_all(bootstrap, env["ESCALERA_TOPIC_DLQ"])]  # type: ignore[arg-type]
    unique = {letter["event_id"]: letter for letter in letters}
    got = Counter((letter["reason"], letter["payload"]) for letter in unique.values())
    assert got == Counter((r.reason, r.payload) for r in reference.rejected)
    transitions = read_all(bootstrap, env["ESCALERA_TOPIC_TRANSITIONS"])
    transition_ids = {orjson.loads(v)["event_id"] for _, v in transitions}  # type: ignore[arg-type]
    return {
        "perks_expected": len(expected),
        "perk_records": len(perks),
        "perk_duplicates": len(perks) - len(meaning),
        "dead_letters_expected": len(reference.rejected),
        "dead_letter_duplicates": len(letters) - len(unique),
        "transition_records": len(transitions),
        "transition_duplicates": len(transitions) - len(transition_ids),
    }


def alive(worker: WorkerProcess) -> None:
    assert worker.process.poll() is None, f"the worker stopped by itself: {worker.tail()}"
