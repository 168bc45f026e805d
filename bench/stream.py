"""Streaming throughput: the Escalera worker against a raw aiokafka loop, same input, same broker, one run.

Both read the same simulated events from the three inbound topics of a local Kafka. The raw loop parses each
record as JSON, updates a per-customer dict and produces one output record per event; the worker does all its
work (decode and validate, event-time merge, the loyalty core, the table, perks, transitions, dead letters).
Throughput = events / (timestamp of the last output record - timestamp of the first), so start-up and group
joins are not counted. Ratio = worker events/s / raw events/s.

Then, with the worker running, events are published at a steady rate and each perk's latency is measured from
the publish time of the event that caused it to the perk record's timestamp.

Run: .venv/bin/python bench/stream.py [--customers 5000] [--rate 1000] [--seconds 20]
Writes bench/results/stream.json.
"""

from __future__ import annotations

import argparse
import asyncio
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
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer

from engine.broker.local import free_port, start_broker
from engine.broker.publish import publish, route
from engine.broker.readback import committed_records
from engine.broker.topics import TopicSpec, ensure_topics
from engine.offline.simulation import SimulationSpec, simulate
from engine.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]


def settings_for(bootstrap: str, tag: str) -> Settings:
    return load_settings(
        {
            "ESCALERA_BOOTSTRAP_SERVERS": bootstrap,
            "ESCALERA_APP_ID": f"bench-{tag}",
            "ESCALERA_TOPIC_PARTITIONS": "4",
            "ESCALERA_WALL_CLOCK_WHEN_IDLE": "false",
            **{f"ESCALERA_TOPIC_{n}": f"{n.lower()}-{tag}" for n in ("PURCHASES", "FEEDBACK", "CUSTOMERS")},
            **{f"ESCALERA_TOPIC_{n}": f"{n.lower()}-{tag}" for n in ("PERKS", "TRANSITIONS", "DLQ")},
        }
    )


def output_span(bootstrap: str, topics: list[str], expect_quiet: float = 5.0) -> tuple[int, float]:
    """Records in `topics` and the seconds between the first and the last one's timestamps."""
    consumer = KafkaConsumer(*topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=int(expect_quiet * 1000))  # fmt: skip
    stamps = [record.timestamp for record in consumer]
    consumer.close()
    return len(stamps), (max(stamps) - min(stamps)) / 1000 if stamps else 0.0


async def raw_loop(settings: Settings, events: int, out_topic: str) -> None:
    """Consume the inbound topics, parse JSON, update a dict per customer, produce one record per event."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    consumer = AIOKafkaConsumer(*settings.inbound_topics, bootstrap_servers=list(settings.bootstrap_servers),
                                group_id=f"raw-{uuid.uuid4().hex[:6]}", auto_offset_reset="earliest")  # fmt: skip
    producer = AIOKafkaProducer(bootstrap_servers=list(settings.bootstrap_servers), linger_ms=5)
    await consumer.start()
    await producer.start()
    customers: dict[str, dict[str, Any]] = {}
    seen = 0
    quiet_since = time.monotonic()
    try:
        while seen < events:
            batches = await consumer.getmany(timeout_ms=500, max_records=2000)
            if batches:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > 30:
                raise RuntimeError(f"the raw loop read {seen} of {events} records and nothing more came for 30 s")
            for records in batches.values():
                for record in records:
                    seen += 1
                    try:
                        event = orjson.loads(record.value)
                    except orjson.JSONDecodeError:
                        continue
                    if not isinstance(event, dict):
                        continue
                    state = customers.setdefault(str(event.get("customer_id")), {"events": 0})
                    state["events"] += 1
                    state["last"] = event.get("occurred_at")
                    await producer.send(out_topic, key=record.key, value=orjson.dumps(state))
        await producer.flush()
    finally:
        await consumer.stop()
        await producer.stop()


def start_worker(
    settings: Settings,
    workdir: Path,
    floor_output: str | None = None,
    log_level: str = "WARNING",
    tick: float = 0.2,
    grace: float | None = None,
) -> subprocess.Popen[bytes]:
    """The Escalera worker, or with `floor_output` the minimal Faust agent of bench/faust_floor.py (`grace`: the
    worker's ESCALERA_ARRIVAL_GRACE_SECONDS, None: its default)."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ESCALERA_")},
        "ESCALERA_BOOTSTRAP_SERVERS": ",".join(settings.bootstrap_servers),
        "ESCALERA_APP_ID": settings.app_id,
        "ESCALERA_TOPIC_PARTITIONS": str(settings.topic_partitions),
        "ESCALERA_WALL_CLOCK_WHEN_IDLE": "false",
        "ESCALERA_DATA_DIR": str(workdir / "tables"),
        "ESCALERA_WEB_PORT": str(free_port()),
        "ESCALERA_LOG_LEVEL": log_level,
        "ESCALERA_LOG_FORMAT": "console",  # the benchmarks read timings off plain log lines
        **{f"ESCALERA_TOPIC_{n.upper()}": getattr(settings, f"topic_{n}")
           for n in ("purchases", "feedback", "customers", "perks", "transitions", "dlq")},
    }  # fmt: skip
    if grace is not None:
        env["ESCALERA_ARRIVAL_GRACE_SECONDS"] = str(grace)
    command = [sys.executable, "-m", "engine.cli", "worker", "--tick", str(tick)]
    if floor_output is not None:
        env["FLOOR_OUTPUT_TOPIC"] = floor_output
        command = [sys.executable, str(ROOT / "bench" / "faust_floor.py"), "worker"]
    return subprocess.Popen(command, env=env, cwd=workdir, stdout=(workdir / "worker.log").open("wb"),
                            stderr=subprocess.STDOUT)  # fmt: skip


def run_until_committed(settings: Settings, events: int, floor_output: str | None = None) -> None:
    """Run a worker (or the Faust floor) until its group has committed every inbound record, then stop it."""
    with tempfile.TemporaryDirectory() as scratch:
        worker = start_worker(settings, Path(scratch), floor_output)
        try:
            deadline = time.monotonic() + 600
            while committed_records(settings) < events:
                if worker.poll() is not None or time.monotonic() > deadline:
                    log = (Path(scratch) / "worker.log").read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"the worker stopped or stalled (exit {worker.returncode}):\n{log}")
                time.sleep(1)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(60)


def latency(settings: Settings, rate: float, seconds: float, start_id: int, after: datetime) -> list[float]:
    """Publish fresh purchases at `rate` per second; seconds from each publish to the perks it caused.

    Their event times follow on from `after` (the simulated shop's last event), a millisecond apart: a jump of
    months would first make the worker sweep every customer who went quiet meanwhile, a one-off burst that is
    not the steady latency measured here."""
    producer = KafkaProducer(bootstrap_servers=list(settings.bootstrap_servers), linger_ms=1)
    sent: dict[str, float] = {}
    now = after + timedelta(seconds=1)
    total = int(rate * seconds)
    began = time.perf_counter()
    for n in range(total):
        customer = f"lat-{start_id + n}"  # a new customer: the purchase makes a buyer, who earns a welcome offer
        event_id = f"lat-e-{start_id + n}"
        line = orjson.dumps({"type": "purchase.completed", "event_id": event_id, "customer_id": customer,
                             "occurred_at": (now + timedelta(milliseconds=n)).isoformat(), "schema_version": 1,
                             "order_id": f"o-{event_id}", "amount": "20.00", "currency": "EUR"})  # fmt: skip
        target = route(line, settings)
        sent[event_id] = time.time()
        producer.send(target.topic, key=target.key, value=line)
        pause = began + (n + 1) / rate - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    producer.flush()
    time.sleep(3)
    servers = list(settings.bootstrap_servers)
    consumer = KafkaConsumer(
        settings.topic_perks, bootstrap_servers=servers, auto_offset_reset="earliest", consumer_timeout_ms=3000
    )
    delays = []
    for record in consumer:
        perk = orjson.loads(record.value)
        if perk["caused_by"] in sent:
            delays.append(record.timestamp / 1000 - sent[perk["caused_by"]])
    consumer.close()
    return delays


def warm_up(settings: Settings, customer: str, moment: datetime, timeout: float = 120.0) -> None:
    """One new customer's purchase, until its welcome offer is out: the worker has started and taken its partitions."""
    event_id = f"{customer}-e"
    line = orjson.dumps({"type": "purchase.completed", "event_id": event_id, "customer_id": customer,
                         "occurred_at": moment.isoformat(), "schema_version": 1, "order_id": f"o-{event_id}",
                         "amount": "20.00", "currency": "EUR"})  # fmt: skip
    publish(iter([line]), settings)
    servers = list(settings.bootstrap_servers)
    consumer = KafkaConsumer(settings.topic_perks, bootstrap_servers=servers, auto_offset_reset="earliest")
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                if any(orjson.loads(record.value)["caused_by"] == event_id for record in records):
                    return
        raise RuntimeError(f"no perk for the warm-up purchase within {timeout:.0f} s")
    finally:
        consumer.close()


def event_time(line: bytes) -> datetime | None:
    """A simulated line's event time, if it has a valid one (the simulation also writes broken lines)."""
    try:
        moment = datetime.fromisoformat(orjson.loads(line)["occurred_at"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    return moment if moment.tzinfo is not None else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "stream.json")
    args = parser.parse_args()
    broker = start_broker()
    try:
        tag = uuid.uuid4().hex[:6]
        settings = settings_for(broker.bootstrap_servers, tag)
        ensure_topics(settings)
        lines = list(simulate(SimulationSpec(args.customers, 365, seed=3, duplicates=0.01, malformed=0.005)))
        publish(iter(lines), settings)
        raw_out = f"raw-out-{tag}"
        ensure_topics(settings, [TopicSpec(raw_out, settings.topic_partitions, 1)])
        asyncio.run(raw_loop(settings, len(lines), raw_out))
        raw_count, raw_span = output_span(broker.bootstrap_servers, [raw_out])
        floor = settings.model_copy(update={"app_id": f"bench-floor-{tag}"})
        floor_out = f"floor-out-{tag}"
        ensure_topics(settings, [TopicSpec(floor_out, settings.topic_partitions, 1)])
        run_until_committed(floor, len(lines), floor_out)
        floor_count, floor_span = output_span(broker.bootstrap_servers, [floor_out])
        with tempfile.TemporaryDirectory() as scratch:
            worker = start_worker(settings, Path(scratch))
            try:
                deadline = time.monotonic() + 600
                while committed_records(settings) < len(lines) and time.monotonic() < deadline:
                    if worker.poll() is not None:
                        raise RuntimeError(f"the worker exited with {worker.returncode}; see {scratch}/worker.log")
                    time.sleep(1)
                outputs = [settings.topic_perks, settings.topic_transitions, settings.topic_dlq]
                worker_count, worker_span = output_span(broker.bootstrap_servers, outputs)
                last = max(moment for line in lines if (moment := event_time(line)) is not None)
                delays = latency(settings, args.rate, args.seconds, 0, last)
            finally:
                worker.send_signal(signal.SIGTERM)
                worker.wait(60)
            # the same worker (its tables kept) with no arrival grace: the lowest latency, events taken as they come
            worker = start_worker(settings, Path(scratch), grace=0.0)
            try:
                total = int(args.rate * args.seconds)
                after = last + timedelta(seconds=2, milliseconds=total)
                warm_up(settings, f"warm-{tag}", after)
                no_grace = latency(settings, args.rate, args.seconds, total, after + timedelta(seconds=1))
            finally:
                worker.send_signal(signal.SIGTERM)
                worker.wait(60)
    finally:
        broker.stop()
    raw_rate, worker_rate, floor_rate = len(lines) / raw_span, len(lines) / worker_span, len(lines) / floor_span
    delays.sort()
    no_grace.sort()
    result = {
        "benchmark": "streaming worker vs raw aiokafka loop, same input and broker, one run",
        "command": f"python bench/stream.py --customers {args.customers} --rate {args.rate} --seconds {args.seconds}",
        "events": len(lines),
        "raw_loop": {"outputs": raw_count, "seconds": round(raw_span, 3), "events_per_second": round(raw_rate)},
        "faust_floor": {
            "outputs": floor_count,
            "seconds": round(floor_span, 3),
            "events_per_second": round(floor_rate),
        },
        "worker": {"outputs": worker_count, "seconds": round(worker_span, 3), "events_per_second": round(worker_rate)},
        "ratio_worker_over_raw": round(worker_rate / raw_rate, 4),
        "ratio_faust_floor_over_raw": round(floor_rate / raw_rate, 4),
        "ratio_worker_over_faust_floor": round(worker_rate / floor_rate, 4),
        "target_ratio": 0.5,
        "latency_publish_to_perk_seconds": {
            "rate_per_second": args.rate,
            "perks": len(delays),
            "p50": round(statistics.median(delays), 4) if delays else None,
            "p99": round(delays[int(len(delays) * 0.99) - 1], 4) if delays else None,
            "arrival_grace_seconds": Settings.model_fields["arrival_grace_seconds"].default,
            "target_p99": 0.1,
        },
        "latency_publish_to_perk_seconds_no_grace": {
            "rate_per_second": args.rate,
            "perks": len(no_grace),
            "p50": round(statistics.median(no_grace), 4) if no_grace else None,
            "p99": round(no_grace[int(len(no_grace) * 0.99) - 1], 4) if no_grace else None,
            "arrival_grace_seconds": 0.0,
        },
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": platform.platform()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("benchmark", "command", "machine")}))


if __name__ == "__main__":
    main()
