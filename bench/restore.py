"""Restoring a worker's table of many customers from its changelog, and the worker's peak memory.

Fills the `customers` table's changelog with N customer states (the states a replay of a simulated shop ends
with, copied under new customer ids, each written once as a worker would), starts a worker on an empty data
directory and measures, one run:
- restore: seconds from the worker's start until Faust reports its tables restored (its log);
- ready: seconds from the start until a purchase published at the start has produced its welcome perk
  (restore, then learning the owned customers' due days and clocks, then the event itself);
- the first midnight after the start (every restored customer's spend and volume settled): seconds from a purchase
  published the next day to its perk, and the worker's log line for that midnight;
- the worker's peak resident memory (VmHWM) at the end;
- then kill -9, and the same worker started again on the data directory it kept: seconds to a new purchase's perk
  from the restart, to its joining the group (the killed worker's session must time out first:
  ESCALERA_SESSION_TIMEOUT_SECONDS), to Faust's "Restore complete", whether the local tables were discarded, and
  its peak memory.

Run: .venv/bin/python bench/restore.py [--customers 1000000]
Writes bench/results/restore.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import orjson
from kafka import KafkaConsumer, KafkaProducer
from stream import start_worker  # bench/stream.py: this script's folder is on the import path

from engine.broker.local import start_broker
from engine.broker.publish import route
from engine.broker.topics import TopicSpec, ensure_topics
from engine.loyalty import load_policy
from engine.offline.replay import Replay
from engine.offline.simulation import SimulationSpec, simulate
from engine.settings import Settings, load_settings
from schemas.decoder import DecodeLimits

ROOT = Path(__file__).resolve().parents[1]


def template_states(customers: int) -> list[tuple[str, bytes]]:
    """Final states of a replayed simulation: (customer_id, state JSON)."""
    policy = load_policy(None)
    lines = list(simulate(SimulationSpec(customers, 365, seed=11)))
    latest = max(orjson.loads(line)["occurred_at"] for line in lines if line.startswith(b"{"))
    now = datetime.fromisoformat(latest) + timedelta(days=1)
    replay = Replay(policy, DecodeLimits(currencies=policy.currencies), now, lambda _: None, lambda _: None)
    for line in lines:
        replay.feed(line)
    replay.finish()
    return [(customer_id, state.to_json()) for customer_id, state in replay.states.items()]


def fill_changelog(settings: Settings, customers: int) -> tuple[int, float]:
    """Write `customers` states to the table's changelog, keyed (and so partitioned) like the worker's own."""
    templates = template_states(2000)
    changelog = settings.changelog_topic
    ensure_topics(settings, [TopicSpec(changelog, settings.topic_partitions, 1, {"cleanup.policy": "compact"})])
    producer = KafkaProducer(bootstrap_servers=list(settings.bootstrap_servers), linger_ms=20,
                             batch_size=1 << 20, max_request_size=8 << 20, acks=1)  # fmt: skip
    written = 0
    began = time.perf_counter()
    for n in range(customers):
        customer_id, raw = templates[n % len(templates)]
        new_id = f"r{n:07d}"
        producer.send(changelog, key=new_id.encode(), value=raw.replace(customer_id.encode(), new_id.encode()))
        written += len(raw)
    producer.flush()
    producer.close()
    return written, time.perf_counter() - began


def probe(settings: Settings, event_id: str, occurred_at: str, since: float, timeout: float) -> float:
    """Publish a new customer's purchase; seconds from `since` (epoch) to its welcome perk's timestamp."""
    line = orjson.dumps({"type": "purchase.completed", "event_id": event_id, "customer_id": event_id,
                         "occurred_at": occurred_at, "schema_version": 1, "order_id": f"o-{event_id}",
                         "amount": "20.00", "currency": "EUR"})  # fmt: skip
    target = route(line, settings)
    producer = KafkaProducer(bootstrap_servers=list(settings.bootstrap_servers))
    producer.send(target.topic, key=target.key, value=line).get(30)
    producer.close()
    consumer = KafkaConsumer(settings.topic_perks, bootstrap_servers=list(settings.bootstrap_servers),
                             auto_offset_reset="earliest", consumer_timeout_ms=1000)  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for record in consumer:
                if orjson.loads(record.value)["caused_by"] == event_id:
                    return round(record.timestamp / 1000 - since, 3)
    finally:
        consumer.close()
    raise RuntimeError(f"no perk for the purchase {event_id} in {timeout:.0f} s")


def peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc status")


def log_seconds(log: str, pattern: str, start: float) -> float | None:
    """Seconds from `start` (epoch) to the first log line matching `pattern`."""
    for line in log.splitlines():
        if re.search(pattern, line):
            stamp = time.mktime(time.strptime(line[1:20], "%Y-%m-%d %H:%M:%S")) + int(line[21:24]) / 1000
            return round(stamp - start, 3)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "restore.json")
    args = parser.parse_args()
    broker = start_broker()
    try:
        tag = uuid.uuid4().hex[:6]
        settings = load_settings({"ESCALERA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
                                  "ESCALERA_APP_ID": f"restore-{tag}", "ESCALERA_TOPIC_PARTITIONS": "4"})  # fmt: skip
        ensure_topics(settings)
        written, fill_seconds = fill_changelog(settings, args.customers)
        print(f"changelog: {args.customers} states, {written / 1e6:.0f} MB in {fill_seconds:.0f} s", flush=True)
        with tempfile.TemporaryDirectory() as scratch:
            workdir = Path(scratch)
            started = time.time()
            worker = start_worker(settings, workdir, log_level="INFO", tick=1.0)
            try:
                # a new customer's purchase, published at once: its welcome perk says the worker is ready
                ready = probe(settings, "probe-1", "2020-01-01T00:00:00+00:00", started, timeout=1800)
                # another, the next day: the worker first passes that midnight, the first since its start, when
                # every restored customer's spend and volume is settled (issue 15's midnight, issue 18's peak)
                published = time.time()
                midnight = round(probe(settings, "probe-2", "2020-01-02T00:00:01+00:00", published, 1800), 3)
                rss = peak_rss_bytes(worker.pid)
                log = (workdir / "worker.log").read_text(errors="replace")
                # kill -9, and the same worker started again on the data directory it kept
                worker.send_signal(signal.SIGKILL)
                worker.wait(60)
                restarted = time.time()
                worker = start_worker(settings, workdir, log_level="INFO", tick=1.0)
                again = probe(settings, "probe-3", "2020-01-02T00:00:02+00:00", restarted, timeout=1800)
                relog = (workdir / "worker.log").read_text(errors="replace")
                restart = {
                    "ready_seconds": again,
                    "joined_group_seconds": log_seconds(relog, r"Joined group", restarted),
                    "restore_complete_seconds": log_seconds(relog, r"Restore complete", restarted),
                    "tables_discarded": "discarding" in relog,
                    "peak_rss_megabytes": round(peak_rss_bytes(worker.pid) / 1e6),
                }
            finally:
                worker.send_signal(signal.SIGTERM)
                worker.wait(120)
            passes = [line.split("]: ", 1)[-1] if "]: " in line else line.split("] ", 3)[-1]
                      for line in log.splitlines() if "midnight" in line and "passed" in line]  # fmt: skip
            restore = log_seconds(log, r"Restore complete", started)
    finally:
        broker.stop()
    result = {
        "benchmark": "restore of the customers table from its changelog at start-up, one run",
        "command": f"python bench/restore.py --customers {args.customers}",
        "customers": args.customers,
        "changelog_megabytes": round(written / 1e6),
        "restore_seconds": restore,
        "ready_seconds": ready,
        "first_midnight_after_start": {"seconds_from_publish_to_perk": midnight, "log": passes[:1]},
        "peak_rss_megabytes": round(rss / 1e6),
        "after_kill_9_with_its_data_directory": restart,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": platform.platform()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("benchmark", "machine")}, indent=1))


if __name__ == "__main__":
    main()
