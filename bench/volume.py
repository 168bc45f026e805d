"""How long a midnight's volume pass blocks a worker with 1,000,000 customers (issue 15, item 7).

Volume is decided on event time: at each midnight, every partition settles the spends of the customers touched
since the last one, the worker computes the population over every partition's spends, and classifies the
customers whose class may change (`engine.loyalty.volume`, `Processor._pass_day`). While it runs, the worker
applies nothing. This times the real code (OwnedPartition.settle, PopulationBoard.population_at, classify_day) on
states held in memory (the worker reads them from RocksDB through Faust's table: slower, not measured here), for:

- the first midnight after a start: every customer touched (restored), every volume classified;
- an ordinary midnight: 1 % of the customers bought that day (their spends change, the population moves);
- a quiet midnight: nobody changed (the population is reused).

Settling includes compressing each changed partition's summary, as the worker does before sending it.

    .venv/bin/python bench/volume.py --customers 1000000   # → bench/results/volume.json
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.broker.partitioner import partition_of  # noqa: E402
from engine.loyalty import DEFAULT_POLICY, CustomerState, day_start  # noqa: E402
from engine.loyalty.volume import classify_day  # noqa: E402
from engine.stream.partitions import OwnedPartition  # noqa: E402
from engine.stream.population import PartitionSummary, PopulationBoard  # noqa: E402

PARTITIONS = 4
DAY = timedelta(days=1)


def shop(customers: int, seed: int, midnight: datetime) -> tuple[dict[str, CustomerState], list[OwnedPartition]]:
    """Customers with one to four purchases in the last year (amounts spread like a shop's), in four partitions."""
    rng = random.Random(seed)
    states: dict[str, CustomerState] = {}
    parts = [OwnedPartition() for _ in range(PARTITIONS)]
    for n in range(customers):
        customer_id = f"c-{n:07d}"
        bought = sorted(midnight - timedelta(minutes=rng.randrange(1, 360 * 1440)) for _ in range(rng.randint(1, 4)))
        state = CustomerState(customer_id=customer_id, clock=bought[-1], has_purchased=True)
        state.purchases = [(f"o-{n}-{i}", at, Decimal(rng.randint(5, 400)), Decimal(0)) for i, at in enumerate(bought)]
        state.last_purchase_at = bought[-1]
        states[customer_id] = state
        parts[partition_of(customer_id.encode(), PARTITIONS)].restore(state)
    return states, parts


def pass_midnight(
    day: datetime, states: dict[str, CustomerState], parts: list[OwnedPartition], board: PopulationBoard
) -> dict[str, float | int]:
    """One midnight on every partition, timed in its three steps."""
    began = time.perf_counter()
    touched = sum(len(part.touched) for part in parts)
    posted = 0
    for number, part in enumerate(parts):
        part.settle(day, states.get, DEFAULT_POLICY)
        spends = part.positive_spends() if part.changed else None
        summary = PartitionSummary(day, day, spends)
        posted += len(summary.to_bytes())  # what the worker sends to the partition-stats topic
        board.post(number, summary)
    settled = time.perf_counter()
    population = board.population_at(day)
    assert population is not None
    computed = time.perf_counter()
    changed = 0
    for part in parts:
        for _ in classify_day(part, day, population, states.get, DEFAULT_POLICY):
            changed += 1
    done = time.perf_counter()
    return {
        "touched": touched,
        "volume_changes": changed,
        "summary_bytes": posted,
        "settle_seconds": round(settled - began, 3),
        "population_seconds": round(computed - settled, 3),
        "classify_seconds": round(done - computed, 3),
        "blocked_seconds": round(done - began, 3),
    }


def buy(
    day: datetime, states: dict[str, CustomerState], parts: list[OwnedPartition], share: float, rng: random.Random
) -> None:
    """A share of the customers buy during the day before `day` (their states change, so they are touched)."""
    for customer_id in rng.sample(sorted(states), int(len(states) * share)):
        state = states[customer_id]
        at = day - timedelta(minutes=rng.randrange(1, 1440))
        state.purchases.append((f"o-{customer_id}-{at.timestamp()}", at, Decimal(rng.randint(5, 400)), Decimal(0)))
        state.clock = state.last_purchase_at = max(state.clock, at)
        parts[partition_of(customer_id.encode(), PARTITIONS)].touched.add(customer_id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=5, help="ordinary midnights to time (the median is reported)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "volume.json")
    args = parser.parse_args()
    rng = random.Random(15)
    first = day_start(datetime.now(UTC))
    built = time.perf_counter()
    states, parts = shop(args.customers, 15, first)
    print(f"{args.customers:,} customers built in {time.perf_counter() - built:.0f} s", flush=True)
    board = PopulationBoard(PARTITIONS, DEFAULT_POLICY.classification.high_volume_share)
    start = pass_midnight(first, states, parts, board)
    print("first midnight:", start, flush=True)
    ordinary = []
    day = first
    for _ in range(args.days):
        day += DAY
        buy(day, states, parts, 0.01, rng)
        ordinary.append(pass_midnight(day, states, parts, board))
        print("ordinary midnight:", ordinary[-1], flush=True)
    quiet = [pass_midnight(day + DAY * (n + 1), states, parts, board) for n in range(3)]
    print("quiet midnight:", quiet[-1], flush=True)

    def median(runs: list[dict[str, float | int]], key: str) -> float:
        return statistics.median(float(run[key]) for run in runs)

    result = {
        "bench": "volume",
        "customers": args.customers,
        "partitions": PARTITIONS,
        "machine": {"python": platform.python_version(), "processor": platform.processor() or platform.machine()},
        "first_midnight": start,
        "ordinary_midnight_median": {key: median(ordinary, key) for key in ordinary[0]},
        "ordinary_midnights": ordinary,
        "quiet_midnight_median": {key: median(quiet, key) for key in quiet[0]},
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("ordinary_midnight_median", "quiet_midnight_median")}, indent=2))


if __name__ == "__main__":
    main()
