"""Replay throughput against a bare loop over the same file, measured in one run.

The bare loop reads the file, parses each line with orjson and sums the amounts as Decimal; the replay
decodes, validates, runs the loyalty core and writes every output. Ratio = bare seconds / replay seconds.
A third loop only decodes and validates every line (`schemas.decoder.decode`, as the replay does): the
least any replay must do, so bare / decode-only bounds the ratio even if the core and the outputs cost nothing.

Run: .venv/bin/python bench/replay.py [--events 1000000] [--bare-runs 3] [--replay-runs 1]
Writes bench/results/replay.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import orjson

from engine.loyalty import DEFAULT_POLICY
from engine.offline.outputs import replay_file
from engine.offline.simulation import SimulationSpec, write
from schemas.decoder import DecodeLimits, Rejection, decode


def bare_loop(path: Path) -> tuple[float, Decimal]:
    began = time.perf_counter()
    total = Decimal(0)
    with path.open("rb") as lines:
        for line in lines:
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(event, dict) and "amount" in event:
                total += Decimal(str(event["amount"]))
    return time.perf_counter() - began, total


LIMITS = DecodeLimits(currencies=DEFAULT_POLICY.currencies, max_skew=timedelta(minutes=5))


def decode_only(path: Path) -> tuple[float, int]:
    now = datetime.now(UTC)
    began = time.perf_counter()
    events = 0
    with path.open("rb") as lines:
        for line in lines:
            events += not isinstance(decode(line.rstrip(b"\n"), now=now, limits=LIMITS), Rejection)
    return time.perf_counter() - began, events


def full_replay(path: Path, out: Path) -> float:
    limits = LIMITS
    began = time.perf_counter()
    replay_file(path, out, DEFAULT_POLICY, limits, datetime.now(UTC))
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--bare-runs", type=int, default=3)
    parser.add_argument("--replay-runs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "replay.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "events.jsonl"
        customers = max(1, args.events // 10)  # about ten events per customer, as the simulation makes them
        began = time.perf_counter()
        lines = write(SimulationSpec(customers, 365, seed=1, duplicates=0.01, malformed=0.005), source)
        simulated = time.perf_counter() - began
        bare, decoded, replayed = [], [], []
        for run in range(max(args.bare_runs, args.replay_runs)):  # alternate, so all see the same machine load
            if run < args.bare_runs:
                bare.append(bare_loop(source)[0])
                decoded.append(decode_only(source)[0])
            if run < args.replay_runs:
                replayed.append(full_replay(source, Path(scratch) / f"out-{run}"))
    result = {
        "benchmark": "offline replay vs bare JSON loop, same file, one run",
        "command": f"python bench/replay.py --events {args.events} --bare-runs {args.bare_runs} "
        f"--replay-runs {args.replay_runs}",
        "lines": lines,
        "simulate_seconds": round(simulated, 2),
        "bare_seconds": {"median": statistics.median(bare), "samples": bare},
        "decode_only_seconds": {"median": statistics.median(decoded), "samples": decoded},
        "replay_seconds": {"median": statistics.median(replayed), "samples": replayed},
        "replay_lines_per_second": round(lines / statistics.median(replayed)),
        "bare_lines_per_second": round(lines / statistics.median(bare)),
        "ratio_bare_over_replay": round(statistics.median(bare) / statistics.median(replayed), 4),
        "ratio_bare_over_decode_only": round(statistics.median(bare) / statistics.median(decoded), 4),
        "microseconds_per_line": {
            "bare": round(statistics.median(bare) / lines * 1e6, 2),
            "decode_only": round(statistics.median(decoded) / lines * 1e6, 2),
            "replay": round(statistics.median(replayed) / lines * 1e6, 2),
        },
        "target_ratio": 0.25,  # issue 4's, withdrawn by issue 18 (decoding alone caps it at the ratio above)
        # issue 18's target: the replay at least 0.15 of the decode-only loop
        "ratio_decode_only_over_replay": round(statistics.median(decoded) / statistics.median(replayed), 4),
        "target_ratio_decode_only_over_replay": 0.15,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": platform.platform()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    shown = (
        "lines",
        "microseconds_per_line",
        "ratio_bare_over_replay",
        "ratio_bare_over_decode_only",
        "ratio_decode_only_over_replay",
    )
    print(json.dumps({k: result[k] for k in shown}))


if __name__ == "__main__":
    main()
