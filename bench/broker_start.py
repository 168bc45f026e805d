"""Time to start the local Kafka broker (format + JVM start + first metadata answer), and to stop it.

Run: .venv/bin/python bench/broker_start.py [--runs 5]   (writes bench/results/broker_start.json)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from engine.broker.local import start_broker
from engine.broker.local.jars import broker_jars


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "broker_start.json")
    args = parser.parse_args()
    broker_jars()  # the one-off Maven fetch is not part of a start
    starts, stops = [], []
    for _ in range(args.runs):
        broker = start_broker()
        starts.append(broker.started_in_seconds)
        began = time.monotonic()
        broker.stop()
        stops.append(time.monotonic() - began)
    result = {
        "benchmark": "local Kafka broker start (fresh data dir: format, JVM start, metadata answered)",
        "command": "python bench/broker_start.py --runs " + str(args.runs),
        "runs": args.runs,
        "start_seconds": {"median": statistics.median(starts), "min": min(starts), "max": max(starts)},
        "stop_seconds": {"median": statistics.median(stops), "min": min(stops), "max": max(stops)},
        "samples": {"start": starts, "stop": stops},
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["start_seconds"]), json.dumps(result["stop_seconds"]))


if __name__ == "__main__":
    main()
