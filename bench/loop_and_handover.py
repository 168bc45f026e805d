"""What uvloop and the direct hand-over (`engine/stream/faust_fixes/handover.py`) each do for the Faust floor and the
worker: the four combinations of each, alternated round by round on one broker and one input, in one run.

The input and the measure are bench/stream.py's: a simulated year of a shop (30,693 lines at 3,000 customers)
published once; each contender reads it all on its own consumer group, and throughput = events / (the last output
record's timestamp - the first one's). "faust" runs Faust's own hand-over (`Consumer._drain_messages` through
`Service.wait_first`): the fix is switched off in that subprocess only, by replacing `direct_handover` before the
app is made; the event loop is chosen by ESCALERA_EVENT_LOOP, as a user would.

Run: .venv/bin/python bench/loop_and_handover.py [--customers 3000] [--rounds 3]
Writes bench/results/loop_and_handover.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from stream import output_span, settings_for  # bench/stream.py: the same input and measure (run from bench/)

from engine.broker.local import free_port, start_broker
from engine.broker.publish import publish
from engine.broker.readback import committed_records
from engine.broker.topics import TopicSpec, ensure_topics
from engine.offline.simulation import SimulationSpec, simulate
from engine.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
FAUST_HANDOVER = "import engine.stream.faust_fixes.handover as fix; fix.direct_handover = lambda consumer: None\n"
WORKER = "import sys; sys.argv = ['escalera', 'worker', '--tick', '0.2']\nfrom engine.cli import main; main()\n"
FLOOR = (
    "import runpy, sys; sys.argv = ['faust_floor.py', 'worker']\n"
    f"runpy.run_path({str(ROOT / 'bench' / 'faust_floor.py')!r}, run_name='__main__')\n"
)
CONFIGS = [
    (kind, loop, handover)
    for kind in ("floor", "worker")
    for loop in ("asyncio", "uvloop")
    for handover in ("faust", "direct")
]


def run(settings: Settings, events: int, kind: str, loop: str, handover: str, output: str | None) -> None:
    """One contender until its group has committed every inbound record."""
    with tempfile.TemporaryDirectory() as scratch:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("ESCALERA_")},
            "ESCALERA_BOOTSTRAP_SERVERS": ",".join(settings.bootstrap_servers),
            "ESCALERA_APP_ID": settings.app_id,
            "ESCALERA_TOPIC_PARTITIONS": str(settings.topic_partitions),
            "ESCALERA_WALL_CLOCK_WHEN_IDLE": "false",
            "ESCALERA_DATA_DIR": str(Path(scratch) / "tables"),
            "ESCALERA_WEB_PORT": str(free_port()),
            "ESCALERA_LOG_LEVEL": "WARNING",
            "ESCALERA_LOG_FORMAT": "console",
            "ESCALERA_EVENT_LOOP": loop,
            **{f"ESCALERA_TOPIC_{n.upper()}": getattr(settings, f"topic_{n}")
               for n in ("purchases", "feedback", "customers", "perks", "transitions", "dlq")},
        }  # fmt: skip
        if output is not None:
            env["FLOOR_OUTPUT_TOPIC"] = output
        code = (FAUST_HANDOVER if handover == "faust" else "") + (FLOOR if kind == "floor" else WORKER)
        log = Path(scratch) / "worker.log"
        worker = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=scratch, stdout=log.open("wb"),
                                  stderr=subprocess.STDOUT)  # fmt: skip
        try:
            deadline = time.monotonic() + 600
            while committed_records(settings) < events:
                if worker.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{kind} stopped or stalled:\n{log.read_text(errors='replace')[-3000:]}")
                time.sleep(1)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "loop_and_handover.json")
    args = parser.parse_args()
    broker = start_broker()
    runs: list[dict[str, object]] = []
    try:
        tag = uuid.uuid4().hex[:6]
        base = settings_for(broker.bootstrap_servers, tag)
        ensure_topics(base)
        lines = list(simulate(SimulationSpec(args.customers, 365, seed=3, duplicates=0.01, malformed=0.005)))
        publish(iter(lines), base)
        for round_ in range(args.rounds):
            for kind, loop, handover in CONFIGS:
                run_id = f"{round_}-{kind}-{loop}-{handover}-{uuid.uuid4().hex[:4]}"
                settings = base.model_copy(update={
                    "app_id": f"ab-{run_id}", "topic_perks": f"perks-{run_id}",
                    "topic_transitions": f"transitions-{run_id}", "topic_dlq": f"dlq-{run_id}",
                })  # fmt: skip
                output = f"floor-{run_id}" if kind == "floor" else None
                if output is not None:
                    ensure_topics(base, [TopicSpec(output, base.topic_partitions, 1)])
                run(settings, len(lines), kind, loop, handover, output)
                topics = [output] if output else [settings.topic_perks, settings.topic_transitions, settings.topic_dlq]
                count, span = output_span(broker.bootstrap_servers, topics)
                runs.append({"round": round_, "contender": kind, "event_loop": loop, "handover": handover,
                             "outputs": count, "events_per_second": round(len(lines) / span)})  # fmt: skip
                print(json.dumps(runs[-1]), flush=True)
    finally:
        broker.stop()
    medians = {
        f"{kind} {loop} {handover}": statistics.median(
            float(str(r["events_per_second"])) for r in runs
            if (r["contender"], r["event_loop"], r["handover"]) == (kind, loop, handover)
        )
        for kind, loop, handover in CONFIGS
    }  # fmt: skip

    def lift(kind: str, loop: str, handover: str) -> float:
        return round(medians[f"{kind} {loop} {handover}"] / medians[f"{kind} asyncio faust"], 3)

    result = {
        "benchmark": "uvloop and the direct hand-over, Faust floor and worker, alternated in one run",
        "command": f"python bench/loop_and_handover.py --customers {args.customers} --rounds {args.rounds}",
        "events": len(lines),
        "runs": runs,
        "median_events_per_second": medians,
        "lift_over_asyncio_and_faust_handover": {
            name: lift(*name.split()) for name in medians if not name.endswith("asyncio faust")
        },
        "ratio_worker_over_floor_same_settings": {
            f"{loop} {handover}": round(medians[f"worker {loop} {handover}"] / medians[f"floor {loop} {handover}"], 3)
            for _, loop, handover in CONFIGS[:4]
        },
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": platform.platform()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("median_events_per_second", "lift_over_asyncio_and_faust_handover",
                                             "ratio_worker_over_floor_same_settings")}))  # fmt: skip


if __name__ == "__main__":
    main()
