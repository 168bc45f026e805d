"""Streaming throughput: the Escalera worker against a raw aiokafka loop, a minimal Quix Streams app and the
Faust floor, same input, same broker, one run.

All read the same simulated events from the three inbound topics of a local Kafka, each with its own consumer
group from the earliest offset. The raw loop parses each record as JSON, updates a per-customer dict and produces
one output record per event; the Quix app (bench/quix_app.py) and the Faust floor (bench/faust_floor.py) do the
same with one state update per record in their RocksDB stores (with changelogs); the worker does all its work
(decode and validate, event-time merge, the loyalty core, the table, perks, transitions, dead letters).
Throughput = events / (timestamp of the last output record - timestamp of the first), so start-up and group
joins are not counted. Ratios = one's events/s / another's. `--contenders` runs only some of them (the others are
reported as null); the Quix app needs the `bench` extra (pip install -e '.[bench]') and is skipped without it.

Then, with the worker running, new customers' first purchases are published at a steady rate (`--rate`) and
each perk's latency is measured from the publish time of the event that caused it to the perk record's timestamp,
with the default arrival grace and again with the grace at 0 (the same worker, its tables kept, restarted).

Last, the realistic mix (`mix_latency`): another simulated shop's events (purchases, refunds, feedback, customer
events, referrals; no broken or repeated lines) under new customer ids, published at a steady `--mix-rate` for
`--mix-seconds` to the worker with the grace at 0 and then, restarted, with the default grace. Every perk and
transition names the event that caused it (`caused_by`; a referral credit's decisions are traced back to the
referred customer's purchase); its latency is from that event's publish to the decision record's timestamp.

Run: .venv/bin/python bench/stream.py [--customers 5000] [--rate 1000] [--seconds 20] [--mix-rate 1000]
     [--mix-seconds 15] [--contenders raw,quix,...]
Writes bench/results/stream.json.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
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
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient

from engine.broker.local import free_port, start_broker
from engine.broker.publish import publish, route
from engine.broker.readback import committed_records
from engine.broker.topics import TopicSpec, ensure_topics
from engine.offline.simulation import SimulationSpec, simulate
from engine.settings import Settings, load_settings
from engine.stream import records

ROOT = Path(__file__).resolve().parents[1]
CONTENDERS = ("raw", "quix", "floor", "worker")  # also the order they run in
MIX_SEED = 4  # the realistic mix's shop (the backlog's is seed 3)


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
    extra: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """The Escalera worker, or with `floor_output` the minimal Faust agent of bench/faust_floor.py (`grace`: the
    worker's ESCALERA_ARRIVAL_GRACE_SECONDS, None: its default; `extra`: more of its environment)."""
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
    env.update(extra or {})
    command = [sys.executable, "-m", "engine.cli", "worker", "--tick", str(tick)]
    if floor_output is not None:
        env["FLOOR_OUTPUT_TOPIC"] = floor_output
        command = [sys.executable, str(ROOT / "bench" / "faust_floor.py"), "worker"]
    return subprocess.Popen(command, env=env, cwd=workdir, stdout=(workdir / "worker.log").open("wb"),
                            stderr=subprocess.STDOUT)  # fmt: skip


def start_quix(settings: Settings, workdir: Path, output: str) -> subprocess.Popen[bytes]:
    """The minimal Quix Streams app of bench/quix_app.py: consumer group `settings.app_id`, state in `workdir`."""
    command = [sys.executable, str(ROOT / "bench" / "quix_app.py"), "--bootstrap", ",".join(settings.bootstrap_servers),
               "--group", settings.app_id, "--state-dir", str(workdir / "state"), "--output", output,
               *settings.inbound_topics]  # fmt: skip
    return subprocess.Popen(command, cwd=workdir, stdout=(workdir / "worker.log").open("wb"), stderr=subprocess.STDOUT)


def run_until_committed(
    settings: Settings, events: int, start: Callable[[Path], subprocess.Popen[bytes]] | None = None
) -> None:
    """Run a worker (or what `start` starts in a scratch directory: the Faust floor, the Quix app) until its group
    (`settings.app_id`) has committed every inbound record, then stop it."""
    with tempfile.TemporaryDirectory() as scratch:
        worker = start(Path(scratch)) if start is not None else start_worker(settings, Path(scratch))
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


Paced = tuple[str, str, bytes | None, bytes]  # (event id, topic, key, line): one event to publish


def paced(settings: Settings, events: Iterable[bytes]) -> list[Paced]:
    """`events` (lines with an event_id) ready for `publish_paced`: routed as `publish` routes them."""
    ready = []
    for line in events:
        target = route(line, settings)
        ready.append((str(orjson.loads(line)["event_id"]), target.topic, target.key, line))
    return ready


def publish_paced(settings: Settings, events: list[Paced], rate: float) -> tuple[dict[str, float], dict[str, Any]]:
    """Publish `events` at `rate` per second, sleeping to the schedule; each event id's send time (wall clock), and
    whether the publisher kept up: the rate achieved and how far behind the schedule a send ever was."""
    producer = KafkaProducer(bootstrap_servers=list(settings.bootstrap_servers), linger_ms=1)
    for topic in {topic for _, topic, _, _ in events}:
        producer.partitions_for(topic)  # the topics' metadata now, not at the first send, which it would hold up
    sent: dict[str, float] = {}
    behind = 0.0
    began = time.perf_counter()
    first = last = time.time()
    for n, (event_id, topic, key, line) in enumerate(events):
        behind = max(behind, time.perf_counter() - (began + n / rate))
        sent[event_id] = last = time.time()
        if n == 0:
            first = last
        producer.send(topic, key=key, value=line)
        pause = began + (n + 1) / rate - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    producer.flush()
    producer.close()
    achieved = (len(events) - 1) / (last - first) if len(events) > 1 and last > first else None
    return sent, {
        "published": len(events),
        "published_per_second": round(achieved, 1) if achieved else None,
        "publish_max_behind_schedule_seconds": round(behind, 4),
    }


def latency(settings: Settings, rate: float, seconds: float, start_id: int, after: datetime) -> list[float]:
    """Publish fresh purchases at `rate` per second; seconds from each publish to the perks it caused.

    Their event times follow on from `after` (the simulated shop's last event), a millisecond apart: a jump of
    months would first make the worker sweep every customer who went quiet meanwhile, a one-off burst that is
    not the steady latency measured here."""
    now = after + timedelta(seconds=1)
    lines = []
    for n in range(int(rate * seconds)):
        customer = f"lat-{start_id + n}"  # a new customer: the purchase makes a buyer, who earns a welcome offer
        event_id = f"lat-e-{start_id + n}"
        lines.append(orjson.dumps({"type": "purchase.completed", "event_id": event_id, "customer_id": customer,
                                   "occurred_at": (now + timedelta(milliseconds=n)).isoformat(), "schema_version": 1,
                                   "order_id": f"o-{event_id}", "amount": "20.00", "currency": "EUR"}))  # fmt: skip
    sent, _ = publish_paced(settings, paced(settings, lines), rate)
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


def mix_events(customers_per_line: float, total: int, prefix: str, start: datetime) -> list[bytes]:
    """The first `total` events of a simulated shop (seed MIX_SEED, no broken or repeated lines: every line is a
    valid event with a new id) in the simulation's order, for new customers: ids prefixed with `prefix`
    (customers, their referrers, events), event times rewritten to `start`, `start` + 1 ms, ...

    Why rewrite the event times: kept, they would span a year, and each publish would jump the worker's clock by
    hours or days, so its midnights (volume reclassification, every quiet customer's time-driven changes) would
    come as bursts through the run, a backfill rather than the steady latency measured here (and the first
    event would be months behind the backlog's last, so late). Following on from the last event time already
    used, a millisecond apart, the clock moves as the wall clock does at 1,000 events/s, crosses no midnight,
    and each customer's life keeps its order: registration, interest, purchases, refunds, feedback, friends."""
    customers = max(1, int(total * customers_per_line * 1.1) + 1)
    while True:
        lines = list(simulate(SimulationSpec(customers, 365, seed=MIX_SEED)))
        if len(lines) >= total:
            break
        customers *= 2
    events = []
    for n, line in enumerate(lines[:total]):
        event = orjson.loads(line)
        event["event_id"] = prefix + event["event_id"]
        event["customer_id"] = prefix + event["customer_id"]
        if event.get("referred_by"):
            event["referred_by"] = prefix + event["referred_by"]
        event["occurred_at"] = (start + timedelta(milliseconds=n)).isoformat()
        events.append(orjson.dumps(event))
    return events


def settle(settings: Settings, timeout: float = 180.0) -> float | None:
    """Wait until the worker's group has committed every record now in the inbound topics, then every record the
    internal topic (referral credits, ticks) holds by then: what they decided has been delivered (a batch's
    decisions are flushed before its offsets are committed). Seconds it took; None if not within `timeout`."""
    servers = list(settings.bootstrap_servers)
    began = time.monotonic()
    consumer = KafkaConsumer(bootstrap_servers=servers)
    admin = KafkaAdminClient(bootstrap_servers=servers)
    try:
        for topics in (settings.inbound_topics, [settings.internal_topic]):
            parts = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
            ends = {tp: end for tp, end in consumer.end_offsets(parts).items() if end > 0}
            while True:
                done = admin.list_group_offsets({settings.app_id: None}).get(settings.app_id, {})
                if all(tp in done and done[tp].offset >= end for tp, end in ends.items()):
                    break
                if time.monotonic() - began > timeout:
                    return None
                time.sleep(0.25)
    finally:
        consumer.close()
        admin.close()
    return round(time.monotonic() - began, 3)


def read_all(servers: list[str], topic: str) -> list[Any]:
    """Every record `topic` holds now (it may keep growing: read up to its end offsets as of the start)."""
    consumer = KafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False)
    parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    ends = {tp: end for tp, end in consumer.end_offsets(parts).items() if end > 0}
    consumer.assign(list(ends))
    consumer.seek_to_beginning(*ends)
    found: list[Any] = []
    while any(consumer.position(tp) < end for tp, end in ends.items()):
        for tp, batch in consumer.poll(timeout_ms=1000).items():
            found.extend(record for record in batch if record.offset < ends[tp])
    consumer.close()
    return found


def spread(delays: list[float]) -> dict[str, Any]:
    """Count, median and 99th percentile of `delays` (seconds)."""
    delays = sorted(delays)
    return {"count": len(delays), "p50": round(statistics.median(delays), 4) if delays else None,
            "p99": round(p99(delays), 4) if delays else None}  # fmt: skip


def p99(ordered: list[float]) -> float:
    """The 99th percentile of sorted values (the largest below 100)."""
    return ordered[int(len(ordered) * 0.99) - 1]


def mix_latency(settings: Settings, events: list[bytes], rate: float, prefix: str) -> dict[str, Any]:
    """Publish `events` (from `mix_events`, ids starting with `prefix`) at `rate` per second; for every perk and
    transition they caused, the seconds from the causing event's publish to the decision record's timestamp, by
    output topic and overall. A referral credit (internal topic) names the purchase that converted the referral;
    what it decides for the referrer is counted from that purchase's publish, and shown apart too. The overall
    figures are also given for the events published in each second of the run, where a start-up or the end of
    the input (the last events, with nothing after them on the other inputs) shows."""
    kinds: dict[str, int] = {}
    for line in events:
        kind = str(orjson.loads(line)["type"])
        kinds[kind] = kinds.get(kind, 0) + 1
    sent, publishing = publish_paced(settings, paced(settings, events), rate)
    settled = settle(settings)
    servers = list(settings.bootstrap_servers)
    credits: dict[str, str] = {}  # a referral credit's event id -> the purchase that caused it
    for record in read_all(servers, settings.internal_topic):
        internal = records.decode(record.value)
        if isinstance(internal, records.Credit) and internal.credit.caused_by in sent:
            credits[internal.credit.event_id] = internal.credit.caused_by
    delays: dict[str, list[float]] = {"perks": [], "transitions": [], "via_referral_credit": []}
    began = min(sent.values(), default=0.0)
    seconds: list[list[float]] = [[] for _ in range(int(max(sent.values(), default=began) - began) + 1)]
    uncaused = 0
    for name, topic in (("perks", settings.topic_perks), ("transitions", settings.topic_transitions)):
        for record in read_all(servers, topic):
            decision = orjson.loads(record.value)
            cause = credits.get(decision["caused_by"], decision["caused_by"])
            if cause not in sent:
                uncaused += str(decision["customer_id"]).startswith(prefix)
                continue
            delays[name].append(record.timestamp / 1000 - sent[cause])
            seconds[int(sent[cause] - began)].append(delays[name][-1])
            if cause != decision["caused_by"]:
                delays["via_referral_credit"].append(delays[name][-1])
    return {
        "rate_per_second": rate,
        **publishing,
        "events_by_type": dict(sorted(kinds.items())),
        "decisions_of_these_customers_not_caused_by_them": uncaused,
        "settled_seconds_after_last_publish": settled,
        "perks": spread(delays["perks"]),
        "transitions": spread(delays["transitions"]),
        "all": spread(delays["perks"] + delays["transitions"]),
        "via_referral_credit": spread(delays["via_referral_credit"]),
        "all_by_second_of_publishing": [spread(second) for second in seconds],
    }


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


def contenders(text: str) -> list[str]:
    """`--contenders`: a comma list of CONTENDERS, in the order they run."""
    names = {name.strip() for name in text.split(",") if name.strip()}
    unknown = names - set(CONTENDERS)
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose among {','.join(CONTENDERS)} (got {text!r})")
    return [name for name in CONTENDERS if name in names]


def throughput(count: int, span: float, events: int) -> dict[str, Any]:
    """A contender's figures; "rate" (unrounded events/s, for the ratios) is not written out."""
    rate = events / span if span else None
    rounded = round(rate) if rate else None
    return {"outputs": count, "seconds": round(span, 3), "events_per_second": rounded, "rate": rate}


def ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> float | None:
    """a's events/s over b's (None when either did not run)."""
    if a is None or b is None or not a["rate"] or not b["rate"]:
        return None
    return round(float(a["rate"]) / float(b["rate"]), 4)


def percentiles(delays: list[float] | None, rate: float, grace: float) -> dict[str, Any] | None:
    if delays is None:
        return None
    delays = sorted(delays)
    return {
        "rate_per_second": rate,
        "perks": len(delays),
        "p50": round(statistics.median(delays), 4) if delays else None,
        "p99": round(p99(delays), 4) if delays else None,
        "arrival_grace_seconds": grace,
        # issue 18: p99 < 100 ms at 300 new customers/s with no grace; with a grace, p99 < grace + 150 ms
        "target_p99": 0.1 if grace == 0 else round(grace + 0.15, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--mix-rate", type=float, default=1000.0, help="events/s of the realistic mix")
    parser.add_argument("--mix-seconds", type=float, default=15.0, help="how long the realistic mix is published")
    parser.add_argument("--contenders", type=contenders, default=list(CONTENDERS), help=",".join(CONTENDERS))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "stream.json")
    args = parser.parse_args()
    chosen: list[str] = args.contenders
    if "quix" in chosen and importlib.util.find_spec("quixstreams") is None:
        print("quixstreams is not installed (pip install -e '.[bench]'): the quix contender is skipped", flush=True)
        chosen = [name for name in chosen if name != "quix"]
    figures: dict[str, dict[str, Any] | None] = dict.fromkeys(CONTENDERS)
    delays: list[float] | None = None
    no_grace: list[float] | None = None
    mix: dict[str, Any] | None = None
    mix_no_grace: dict[str, Any] | None = None
    broker = start_broker()
    try:
        tag = uuid.uuid4().hex[:6]
        settings = settings_for(broker.bootstrap_servers, tag)
        ensure_topics(settings)
        lines = list(simulate(SimulationSpec(args.customers, 365, seed=3, duplicates=0.01, malformed=0.005)))
        publish(iter(lines), settings)
        events = len(lines)
        if "raw" in chosen:
            raw_out = f"raw-out-{tag}"
            ensure_topics(settings, [TopicSpec(raw_out, settings.topic_partitions, 1)])
            asyncio.run(raw_loop(settings, events, raw_out))
            figures["raw"] = throughput(*output_span(broker.bootstrap_servers, [raw_out]), events)
        # the two minimal stateful apps, each on its own group and output topic
        starters: dict[str, Callable[[Settings, Path, str], subprocess.Popen[bytes]]] = {
            "quix": start_quix,
            "floor": lambda app, workdir, output: start_worker(app, workdir, output),
        }
        for name, start in starters.items():
            if name not in chosen:
                continue
            app = settings.model_copy(update={"app_id": f"bench-{name}-{tag}"})
            output = f"{name}-out-{tag}"
            ensure_topics(settings, [TopicSpec(output, settings.topic_partitions, 1)])
            run_until_committed(app, events, lambda workdir: start(app, workdir, output))  # noqa: B023 (called now)
            figures[name] = throughput(*output_span(broker.bootstrap_servers, [output]), events)
        if "worker" in chosen:
            with tempfile.TemporaryDirectory() as scratch:
                worker = start_worker(settings, Path(scratch))
                try:
                    deadline = time.monotonic() + 600
                    while committed_records(settings) < events and time.monotonic() < deadline:
                        if worker.poll() is not None:
                            raise RuntimeError(f"the worker exited with {worker.returncode}; see {scratch}/worker.log")
                        time.sleep(1)
                    outputs = [settings.topic_perks, settings.topic_transitions, settings.topic_dlq]
                    figures["worker"] = throughput(*output_span(broker.bootstrap_servers, outputs), events)
                    last = max(moment for line in lines if (moment := event_time(line)) is not None)
                    delays = latency(settings, args.rate, args.seconds, 0, last)
                finally:
                    worker.send_signal(signal.SIGTERM)
                    worker.wait(60)
                # the same worker (its tables kept) with no arrival grace: the lowest latency, events taken as they come
                # Then, here and once more with the default grace, the realistic mix: new customers each time, their
                # event times following on from the last one used (see mix_events)
                mixed = int(args.mix_rate * args.mix_seconds)
                per_line = args.customers / len(lines)
                worker = start_worker(settings, Path(scratch), grace=0.0)
                try:
                    total = int(args.rate * args.seconds)
                    after = last + timedelta(seconds=2, milliseconds=total)
                    warm_up(settings, f"warm-{tag}", after)
                    no_grace = latency(settings, args.rate, args.seconds, total, after + timedelta(seconds=1))
                    after += timedelta(seconds=3, milliseconds=total)  # past the last event time used
                    shop = mix_events(per_line, mixed, f"mix0-{tag}-", after)
                    mix_no_grace = mix_latency(settings, shop, args.mix_rate, f"mix0-{tag}-")
                finally:
                    worker.send_signal(signal.SIGTERM)
                    worker.wait(60)
                # the same worker again (its tables kept), with the default arrival grace
                worker = start_worker(settings, Path(scratch))
                try:
                    after += timedelta(seconds=1, milliseconds=mixed)
                    warm_up(settings, f"warm-mix-{tag}", after)
                    shop = mix_events(per_line, mixed, f"mix1-{tag}-", after + timedelta(seconds=1))
                    mix = mix_latency(settings, shop, args.mix_rate, f"mix1-{tag}-")
                finally:
                    worker.send_signal(signal.SIGTERM)
                    worker.wait(60)
    finally:
        broker.stop()
    raw, quix_figures, floor_figures, worker_figures = (figures[name] for name in CONTENDERS)
    shown = {name: None if found is None else {k: v for k, v in found.items() if k != "rate"}
             for name, found in figures.items()}  # fmt: skip
    command = f"python bench/stream.py --customers {args.customers} --rate {args.rate} --seconds {args.seconds}"
    command += f" --mix-rate {args.mix_rate} --mix-seconds {args.mix_seconds}"
    if args.contenders != list(CONTENDERS):
        command += f" --contenders {','.join(args.contenders)}"
    grace = float(Settings.model_fields["arrival_grace_seconds"].default)
    latency_figures = percentiles(delays, args.rate, grace)
    for found, its_grace, target in ((mix, grace, grace + 0.15), (mix_no_grace, 0.0, 0.25)):
        if found is not None:  # the target is for "all" (perks and transitions), at 1,000 events/s
            found.update(arrival_grace_seconds=its_grace, target_p99=round(target, 4), seed=MIX_SEED)
    result = {
        "benchmark": "streaming worker vs raw aiokafka loop, Quix Streams app and Faust floor, same input and broker, "
        "one run",
        "command": command,
        "events": events,
        "raw_loop": shown["raw"],
        "quix": shown["quix"],
        "faust_floor": shown["floor"],
        "worker": shown["worker"],
        "ratio_worker_over_raw": ratio(worker_figures, raw),
        "ratio_quix_over_raw": ratio(quix_figures, raw),
        "ratio_faust_floor_over_raw": ratio(floor_figures, raw),
        "ratio_worker_over_quix": ratio(worker_figures, quix_figures),
        "ratio_faust_floor_over_quix": ratio(floor_figures, quix_figures),
        "ratio_worker_over_faust_floor": ratio(worker_figures, floor_figures),
        "target_ratio_worker_over_faust_floor": 0.7,  # issue 18 (issue 5 asked 0.5 of the raw loop: withdrawn)
        "target_ratio_worker_over_quix": 0.4,
        "latency_publish_to_perk_seconds": latency_figures,
        "latency_publish_to_perk_seconds_no_grace": percentiles(no_grace, args.rate, 0.0),
        "latency_mix_publish_to_decision_seconds": mix,
        "latency_mix_publish_to_decision_seconds_no_grace": mix_no_grace,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": platform.platform()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("benchmark", "command", "machine")}))


if __name__ == "__main__":
    main()
