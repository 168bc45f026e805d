"""The README's "Going live with your history" works as written (issue 17: "a new user can follow the README section
from a simulated three-year history to a live purchase that earns its perk").

The section's bash blocks are run line by line, in their order, as written, in a fresh folder with the virtual
environment's `escalera` on PATH (as after `source .venv/bin/activate`), against the session's broker: the
environment names it (ESCALERA_BOOTSTRAP_SERVERS) and gives this test an app id and topic names of its own, so
nothing else on the broker is touched. The `escalera worker` lines run in the background, as the reader's other
terminals do, with their arguments and variables, on free web ports instead of 6066 and 6067 (tests run beside
others); the reader's `escalera kafka` is the session's broker. Where the reader waits (a worker restoring its table,
a published purchase being processed), the test waits for the same thing. Settings are the defaults (the wall clock
on, 8 partitions, RocksDB tables).

The end of the story is checked against `escalera replay` of the history and the live lines, as of now: every
customer's state in the workers' table, what `escalera explain` shows and the section's comments say, the perk the
live purchase earns, and every perk and transition published, by id — the history's decisions before the cutover
never, the others once."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path

import orjson

from engine.broker.local import free_port
from engine.loyalty import DEFAULT_POLICY, CustomerState, DecisionEvent
from engine.offline.replay import Replay
from engine.offline.simulation import SimulationSpec, simulate
from schemas.decoder import DecodeLimits
from schemas.events import CustomerErased, PerkGranted
from tests.integration.engine_harness import (
    Expected,
    WorkerProcess,
    assert_published_as_replayed,
    differences,
    engine_env,
    settings_of,
    table_states,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the virtual environment's bin/, where `escalera` is
SECTION = "Going live with your history"
README_PORTS = ("6066", "6067")  # the web ports the section's workers use (6066: ESCALERA_WEB_PORT's default)
# The section's history, smaller: 60 customers instead of 2,000, the commands otherwise as written (the whole run
# takes about 35 s instead of 50 s: `make test` has a 20-minute budget). The section's event count for its own
# arguments is checked apart, in process.
SMALLER = ("--customers 2000", "--customers 60")


def section_lines() -> list[str]:
    """The command lines of the section's bash blocks, in order (blank and comment-only lines left out)."""
    readme = (ROOT / "README.md").read_text()
    assert f"\n## {SECTION}\n" in readme, f"the README has no section {SECTION!r}"
    section = readme.split(f"\n## {SECTION}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    lines = [line for block in blocks for line in block.splitlines()]
    return [line for line in lines if line.strip() and not line.lstrip().startswith("#")]


@dataclass
class Line:
    """One line of the section: the command as written, its words (variables assigned before it apart), its
    comment."""

    text: str
    variables: dict[str, str]
    words: list[str]
    comment: str

    @classmethod
    def parse(cls, text: str) -> Line:
        words = shlex.split(text, comments=True)
        variables: dict[str, str] = {}
        while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
            name, value = words.pop(0).split("=", 1)
            variables[name] = value
        comment = text.split("  # ", 1)[1] if "  # " in text else ""
        return cls(text, variables, words, comment)

    def escalera(self, command: str) -> bool:
        return self.words[:2] == ["escalera", command]


@dataclass
class Reference:
    """What `escalera replay` of the lines makes, as of a moment."""

    states: dict[str, CustomerState]
    decisions: list[DecisionEvent]

    def expected(self) -> Expected:
        perks = {d.perk_id for d in self.decisions if isinstance(d, PerkGranted)}
        transitions = {d.event_id for d in self.decisions if not isinstance(d, PerkGranted | CustomerErased)}
        erased = {d.event_id for d in self.decisions if isinstance(d, CustomerErased)}
        return Expected(self.states, perks, transitions, late=0, erasure_ids=erased)


def replayed(lines: list[bytes], as_of: datetime | None) -> Reference:
    """The replay of `lines`, swept to `as_of` (None: not swept past the last line, as bootstrap folds)."""
    decisions: list[DecisionEvent] = []
    replay = Replay(DEFAULT_POLICY, DecodeLimits(currencies=DEFAULT_POLICY.currencies), as_of or datetime.now(UTC),
                    decisions.append, lambda _: None)  # fmt: skip
    for line in lines:
        replay.feed(line)
    if as_of is not None:
        replay.finish(as_of)
    return Reference(replay.states, decisions)


def earned_by_live(reference: Reference) -> list[PerkGranted]:
    """The perks the live purchase (event id `live-1`) earns in the replay."""
    return [d for d in reference.decisions if isinstance(d, PerkGranted) and d.caused_by == "live-1"]


def decision_id(decision: DecisionEvent | dict[str, str]) -> str:
    if isinstance(decision, dict):
        return decision["perk_id"] if decision["type"] == "perk.granted" else decision["event_id"]
    return decision.perk_id if isinstance(decision, PerkGranted) else decision.event_id


def ids_in(path: Path) -> set[str]:
    return {decision_id(orjson.loads(line)) for line in path.read_bytes().splitlines()}


def shown_step(explained: str) -> str:
    """The step `escalera explain` prints."""
    found = re.search(r"^step\s+(\S+)", explained, flags=re.M)
    assert found is not None, explained
    return found.group(1)


def _ready(worker: WorkerProcess) -> bool:
    try:
        return worker.get("/ready")[0] == 200
    except OSError:
        return False


def test_the_going_live_section_runs_as_written_and_ends_where_the_replay_of_history_and_live_lines_ends(
    bootstrap: str, tmp_path: Path
) -> None:
    lines = [Line.parse(text) for text in section_lines()]
    ports: dict[str, str] = {}
    while len(set(ports.values())) < len(README_PORTS):
        ports = {readme: str(free_port()) for readme in README_PORTS}
    env = engine_env(bootstrap, partitions=8)  # its own app id and topics; 8 partitions, the default
    for default in ("ESCALERA_WALL_CLOCK_WHEN_IDLE", "ESCALERA_TABLE_STORE", "ESCALERA_LOG_LEVEL"):
        del env[default]  # default settings: the wall clock on, RocksDB, INFO
    settings = settings_of(env)
    shell = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ESCALERA_")},
        **env,
        "ESCALERA_WEB_PORT": ports["6066"],
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    escalera = shutil.which("escalera", path=str(BIN))
    assert escalera is not None, f"no escalera in {BIN}"
    # The story's steps, in the order a newcomer takes them; a customer explained before and after the purchase.
    steps = [line.words[1] for line in lines if line.words[:1] == ["escalera"]]
    first = [steps.index(step) for step in ("simulate", "validate", "bootstrap", "worker", "explain", "publish")]
    assert first == sorted(first) and steps[-1] == "explain", steps

    def run(line: Line) -> subprocess.CompletedProcess[str]:
        text = line.text.replace(*SMALLER)
        for readme, port in ports.items():
            text = text.replace(readme, port)
        result = subprocess.run(["bash", "-c", "set -euo pipefail\n" + text], cwd=tmp_path, env=shell,
                                capture_output=True, text=True, timeout=300)  # fmt: skip
        assert result.returncode == 0, (line.text, result.stdout[-2000:], result.stderr[-3000:])
        assert "Traceback" not in result.stdout + result.stderr, (line.text, result.stderr[-3000:])
        return result

    pool = ThreadPoolExecutor(max_workers=1)
    folding: Future[Reference] | None = None  # the fold of the history (no final sweep), once it is simulated
    workers: list[WorkerProcess] = []
    published_from: datetime | None = None
    bootstraps = 0
    live: list[bytes] = []
    after: Reference | None = None
    customer = ""
    history: list[bytes] = []
    try:
        for line in lines:
            if line.escalera("worker"):  # a terminal of its own: in the background
                variables = {name: ports.get(value, value) for name, value in line.variables.items()}
                port = variables.get("ESCALERA_WEB_PORT", shell["ESCALERA_WEB_PORT"])
                log = tmp_path / f"worker-{len(workers) + 1}.log"
                process = subprocess.Popen([escalera, *line.words[1:]], cwd=tmp_path, env={**shell, **variables},
                                           stdout=log.open("ab"), stderr=subprocess.STDOUT)  # fmt: skip
                workers.append(WorkerProcess(process, log, int(port)))
                continue
            for worker in workers:  # the reader goes on once the workers have restored the table
                wait_until(partial(_ready, worker), 120, f"the worker is ready; log: {worker.tail()}")
            result = run(line)
            if line.escalera("simulate"):
                history = (tmp_path / line.words[line.words.index("--out") + 1]).read_bytes().splitlines()
                folding = pool.submit(replayed, history, None)  # while the commands run: the test is idle then
                claimed = re.search(r"([\d,]+) events", line.comment)
                assert claimed is not None, line.comment
                customers, days = (int(line.words[line.words.index(name) + 1]) for name in ("--customers", "--days"))
                made = sum(1 for _ in simulate(SimulationSpec(customers=customers, days=days, seed=1)))  # --seed 1
                assert made == int(claimed.group(1).replace(",", "")), (made, line.comment)
            elif line.escalera("validate"):
                assert result.stdout == "", result.stdout[:2000]  # no line rejected
            elif line.escalera("bootstrap"):
                bootstraps += 1
                if "--replace" in line.words and bootstraps > 1:
                    assert "--replace: deleting" in result.stderr, result.stderr[-2000:]
                seeded = orjson.loads((tmp_path / "escalera-bootstrap" / "bootstrap.json").read_bytes())
                assert (seeded["publish_from"] is not None) == ("--publish-from" in line.words), seeded
                moment = seeded["publish_from"]
                published_from = None if moment is None else datetime.fromisoformat(moment)
            elif line.words[:1] == ["curl"]:
                assert '"ready":true' in result.stdout, result.stdout
            elif line.escalera("explain"):
                customer = line.words[2]
                if not live:  # before the live purchase: as the history left the customer (it ends now)
                    assert folding is not None
                    step = folding.result().states[customer].step
                else:
                    assert after is not None
                    step = after.states[customer].step
                    for perk in earned_by_live(after):
                        assert perk.perk in result.stdout and perk.perk in line.comment, (perk.perk, line.comment)
                assert shown_step(result.stdout) == step, result.stdout
                assert step is not None and step in line.comment, (step, line.comment)
            elif line.escalera("publish"):
                live = (tmp_path / line.words[2]).read_bytes().splitlines()
                assert any(b'"event_id":"live-1"' in raw for raw in live)
                after = settled(bootstrap, env, history + live, workers)
        assert after is not None and customer, "the section publishes a live purchase and explains its customer"
        earned = earned_by_live(after)
        assert [d.customer_id for d in earned] == [customer], "the live purchase earns a perk"
        assert all(worker.process.poll() is None for worker in workers)
    finally:
        codes = [worker.stop() for worker in workers]
        pool.shutdown()
    assert codes == [0] * len(workers), (codes, workers[0].tail() if workers else "")
    for worker in workers:
        assert "Traceback" not in worker.log.read_text(errors="replace"), worker.tail()
    assert len(workers) == 2 and bootstraps == 2 and published_from is not None, "the section's story changed"

    # What the last bootstrap held back (the history's decisions before the cutover) went to the audit files only,
    # the rest to published.jsonl; on the topics: those, then what the workers decided since, once each by id.
    assert folding is not None
    folded = folding.result()
    held = {decision_id(d) for d in folded.decisions if published_from is None or d.occurred_at < published_from}
    audit = tmp_path / "escalera-bootstrap"
    assert ids_in(audit / "perks.jsonl") | ids_in(audit / "transitions.jsonl") == held
    assert ids_in(audit / "published.jsonl") == {decision_id(d) for d in folded.decisions} - held != set()
    expected = after.expected()
    expected.perk_ids -= held
    expected.transition_ids -= held
    expected.erasure_ids -= held
    published = assert_published_as_replayed(bootstrap, settings, expected)
    assert {d["perk_id"] for d in published if d["type"] == "perk.granted"} >= {d.perk_id for d in earned}


def settled(bootstrap: str, env: dict[str, str], lines: list[bytes], workers: list[WorkerProcess]) -> Reference:
    """Once the workers' table equals the replay of `lines` as of now (computed again if a UTC midnight passes
    meanwhile), that replay; else say how they differ."""
    deadline = datetime.now(UTC).timestamp() + 120
    day: date | None = None
    while True:
        if datetime.now(UTC).date() != day:
            day = datetime.now(UTC).date()
            reference = replayed(lines, datetime.now(UTC))
        found = differences(table_states(bootstrap, env), reference.states)
        if not found:
            return reference
        if datetime.now(UTC).timestamp() > deadline:
            shown = dict(list(found.items())[:3])
            raise AssertionError(f"{len(found)} customers differ from the replay: {shown}; log: {workers[0].tail()}")
