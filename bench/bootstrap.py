"""Bootstrap from an order history against the offline replay and against publish-and-stream, one run (issue 17).

Simulates three years of a shop (about `--events` lines, in time order), then on a fresh local broker:
1. times `escalera replay FILE --out …` and `escalera bootstrap FILE --out …` on that file, each a subprocess
   (alternated when `--runs` > 1, every bootstrap on a fresh app id): wall seconds, peak RSS (the child's own
   rusage, `os.wait4`), events/s; bootstrap ÷ replay seconds (issue 17's target: ≤ 1.3); the fold / writes split
   and the states written per second are parsed from bootstrap's last stdout line;
2. starts one `escalera worker` on the last bootstrap's app id and topics, on an empty data directory: seconds
   until `/ready` answers 200 (the seeded table restored from its changelog), a sample of seeded customers asked
   on `/customers/{id}` (each must be there), then seconds until a purchase published at that moment has its
   welcome perk (ready to process: the owned customers' due days and clocks learned too), the worker's peak RSS;
3. publishes the same file (or, with `--stream-events N`, its first N lines) with `escalera publish` into another
   app id's topics while a worker of that app id streams it, until the group has committed every record. With a
   prefix, the whole file's time is a projection: start-up + lines / the rate measured over the prefix, said so
   in the JSON.

Run: .venv/bin/python bench/bootstrap.py [--events 1000000] [--runs 1] [--stream-events 0 (the whole file)]
Writes bench/results/bootstrap.json (`--out` to change).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer
from restore import log_seconds, peak_rss_bytes  # bench/restore.py: this script's folder is on the import path
from stream import settings_for  # bench/stream.py

from engine.broker.local import free_port, start_broker
from engine.broker.publish import publish
from engine.broker.readback import committed_records
from engine.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "results" / "bootstrap.json"
EVENTS_PER_CUSTOMER = 19.9  # the simulation over 1,095 days: 50,250 customers gave 1,000,361 lines
SEEDED = re.compile(
    r"seeded (?P<customers>\d+) customers from (?P<events>\d+) events \((?P<rejected>\d+) lines rejected\) "
    r"in (?P<seconds>[\d.]+) s \(fold (?P<fold>[\d.]+) s, (?P<rate>[\d,]+) lines/s; writes (?P<writes>[\d.]+) s\)"
)


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of an `escalera` subprocess for `settings` (no ESCALERA_* variable of ours leaks in)."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("ESCALERA_")},
        "ESCALERA_BOOTSTRAP_SERVERS": ",".join(settings.bootstrap_servers),
        "ESCALERA_APP_ID": settings.app_id,
        "ESCALERA_TOPIC_PARTITIONS": str(settings.topic_partitions),
        "ESCALERA_WALL_CLOCK_WHEN_IDLE": "false",
        "ESCALERA_LOG_FORMAT": "console",  # timings are read off plain log lines
        **{f"ESCALERA_TOPIC_{n.upper()}": getattr(settings, f"topic_{n}")
           for n in ("purchases", "feedback", "customers", "perks", "transitions", "dlq")},
        **extra,
    }  # fmt: skip


def timed(command: list[str], env: dict[str, str], log: Path) -> dict[str, Any]:
    """Run `command` to its end: wall seconds, the child's peak RSS (its own rusage), its last stdout line."""
    began = time.perf_counter()
    with log.open("wb") as out:
        child = subprocess.Popen(command, env=env, cwd=log.parent, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - began
    child.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text(errors="replace")
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(command[2:])} exited with {child.returncode}:\n{text[-3000:]}")
    lines = [line for line in text.splitlines() if line.strip()]
    return {
        "seconds": round(seconds, 2),
        "peak_rss_megabytes": round(usage.ru_maxrss * 1024 / 1e6),  # Linux: kilobytes
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
        "last_line": lines[-1] if lines else "",
    }


def simulate_file(events: int, path: Path) -> tuple[int, int, float]:
    """`escalera simulate` of three years, about `events` lines (a subprocess: its memory is gone afterwards)."""
    customers = max(1, round(events / EVENTS_PER_CUSTOMER))
    began = time.perf_counter()
    subprocess.run([sys.executable, "-m", "engine.cli", "simulate", "--customers", str(customers), "--days", "1095",
                    "--seed", "1", "--out", str(path)], check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    with path.open("rb") as lines:
        count = sum(1 for _ in lines)
    return customers, count, time.perf_counter() - began


def start_worker(settings: Settings, workdir: Path, port: int) -> subprocess.Popen[bytes]:
    """`escalera worker` on an empty data directory (INFO log: Faust's "Restore complete" line)."""
    env = cli_env(settings, ESCALERA_DATA_DIR=str(workdir / "tables"), ESCALERA_WEB_PORT=str(port),
                  ESCALERA_LOG_LEVEL="INFO")  # fmt: skip
    workdir.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([sys.executable, "-m", "engine.cli", "worker"], env=env, cwd=workdir,
                            stdout=(workdir / "worker.log").open("wb"), stderr=subprocess.STDOUT)  # fmt: skip


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (urllib.error.URLError, OSError):
        return None


def probe_line(after: datetime, customer: str) -> bytes:
    """A new customer's purchase just after the history's end: it makes a buyer, who earns a welcome offer."""
    return orjson.dumps({"type": "purchase.completed", "event_id": f"{customer}-e", "customer_id": customer,
                         "occurred_at": (after + timedelta(seconds=1)).isoformat(), "schema_version": 1,
                         "order_id": f"o-{customer}", "amount": "20.00", "currency": "EUR"})  # fmt: skip


def worker_ready(settings: Settings, workdir: Path, sample: list[str], history_ends: datetime) -> dict[str, Any]:
    """Start a worker on the seeded table: seconds to /ready, the sample asked, seconds to a probe's perk."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    started = time.time()
    worker = start_worker(settings, workdir, port)
    try:
        deadline = time.monotonic() + 3600
        while http_status(f"{base}/ready") != 200:
            if worker.poll() is not None or time.monotonic() > deadline:
                tail = (workdir / "worker.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"the worker exited or was not ready in an hour (exit {worker.returncode}):\n{tail}")
            time.sleep(0.25)
        ready = time.time() - started
        found = {customer: http_status(f"{base}/customers/{customer}") for customer in sample}
        missing = [customer for customer, status in found.items() if status != 200]
        if missing:
            raise RuntimeError(f"seeded customers not in the restored table: {missing[:5]} ({found})")
        probe = f"probe-{uuid.uuid4().hex[:6]}"
        published_at = time.time()
        publish(iter([probe_line(history_ends, probe)]), settings)
        consumer = KafkaConsumer(settings.topic_perks, bootstrap_servers=list(settings.bootstrap_servers),
                                 auto_offset_reset="earliest", consumer_timeout_ms=1000)  # fmt: skip
        perk_at = None
        deadline = time.monotonic() + 1800
        while perk_at is None and time.monotonic() < deadline:
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited with {worker.returncode}")
            for record in consumer:
                if orjson.loads(record.value)["caused_by"] == f"{probe}-e":
                    perk_at = record.timestamp / 1000
        consumer.close()
        if perk_at is None:
            raise RuntimeError("no perk for the probe purchase in 30 minutes")
        rss = peak_rss_bytes(worker.pid)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(120)
    log = (workdir / "worker.log").read_text(errors="replace")
    return {
        "ready_seconds": round(ready, 2),
        "restore_complete_seconds": log_seconds(log, r"Restore complete", started),
        "customers_asked": len(sample),
        "customers_found": len(sample) - len(missing),
        "probe_perk_seconds_after_ready": round(perk_at - published_at, 2),
        "probe_perk_seconds_from_start": round(perk_at - started, 2),
        "peak_rss_megabytes": round(rss / 1e6),
    }


def publish_and_stream(settings: Settings, source: Path, workdir: Path) -> dict[str, Any]:
    """`escalera publish` of `source` while a worker of the same app id streams it, until every record is committed.
    Sampled each second: (seconds since start, records committed)."""
    with source.open("rb") as lines:
        records = sum(1 for _ in lines)
    started = time.perf_counter()
    worker = start_worker(settings, workdir, free_port())
    publisher = subprocess.Popen([sys.executable, "-m", "engine.cli", "publish", str(source)], env=cli_env(settings),
                                 stdout=(workdir / "publish.log").open("wb"), stderr=subprocess.STDOUT)  # fmt: skip
    published = None
    samples: list[tuple[float, int]] = []
    try:
        committed = 0
        last_progress = time.monotonic()
        while committed < records:
            time.sleep(1)
            if published is None and publisher.poll() is not None:
                if publisher.returncode != 0:
                    raise RuntimeError(f"escalera publish exited with {publisher.returncode}")
                published = time.perf_counter() - started
            if worker.poll() is not None:
                tail = (workdir / "worker.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"the streaming worker exited with {worker.returncode}:\n{tail}")
            now = committed_records(settings)
            if now > committed:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > 300:
                raise RuntimeError(f"the streaming worker committed nothing for 5 minutes ({committed} of {records})")
            committed = now
            samples.append((round(time.perf_counter() - started, 2), committed))
        seconds = time.perf_counter() - started
        publisher.wait(600)
        published = published or seconds
        rss = peak_rss_bytes(worker.pid)
    finally:
        for process in (publisher, worker):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(120)
    first = next(t for t, n in samples if n > 0)  # the first commit seen: start-up and group join are behind
    at_first = next(n for t, n in samples if n > 0)
    rate = (records - at_first) / max(seconds - first, 1e-9)
    return {
        "records": records,
        "seconds": round(seconds, 1),
        "events_per_second": round(records / seconds),
        "publish_seconds": round(published, 1),
        "first_commit_seconds": first,
        "steady_events_per_second": round(rate),
        "worker_peak_rss_megabytes": round(rss / 1e6),
        "committed_samples": [*samples[:: max(1, len(samples) // 60)], samples[-1]],
    }


def history_end(path: Path) -> datetime:
    """The last line's event time (the simulation writes in time order)."""
    with path.open("rb") as lines:
        lines.seek(max(0, path.stat().st_size - 4096))
        last = lines.read().splitlines()[-1]
    return datetime.fromisoformat(orjson.loads(last)["occurred_at"])


def sample_customers(path: Path, count: int = 20) -> list[str]:
    """Customers spread over the file (each has an event, so each is in the table after bootstrap)."""
    size = path.stat().st_size
    found: list[str] = []
    with path.open("rb") as lines:
        for n in range(count):
            lines.seek(size * n // count)
            lines.readline()
            line = lines.readline()
            if line:
                found.append(orjson.loads(line)["customer_id"])
    return sorted(set(found))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=1, help="replay and bootstrap runs, alternated (medians)")
    parser.add_argument("--stream-events", type=int, default=0, help="stream only this prefix (0: the whole file)")
    parser.add_argument("--scratch", type=Path, default=None, help="where the file and outputs go (default: temp dir)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench-bootstrap-", dir=args.scratch))
    broker = None
    try:
        source = scratch / "history.jsonl"
        customers, lines, simulated = simulate_file(args.events, source)
        print(f"simulated {lines} lines ({customers} customers, 1,095 days) in {simulated:.0f} s", flush=True)
        broker = start_broker()
        tag = uuid.uuid4().hex[:6]
        replays: list[dict[str, Any]] = []
        boots: list[dict[str, Any]] = []
        for run in range(args.runs):  # alternated, so both see the same machine load
            settings = settings_for(broker.bootstrap_servers, f"{tag}-{run}")  # a fresh app id: an empty table
            command = [sys.executable, "-m", "engine.cli", "replay", str(source), "--out", str(scratch / "replay")]
            replays.append(timed(command, cli_env(settings), scratch / f"replay-{run}.log"))
            print(f"replay {run}: {replays[-1]}", flush=True)
            shutil.rmtree(scratch / "replay")
            command = [sys.executable, "-m", "engine.cli", "bootstrap", str(source), "--out", str(scratch / "boot")]
            boot = timed(command, cli_env(settings), scratch / f"bootstrap-{run}.log")
            seeded = SEEDED.search(boot["last_line"])
            if seeded is None:
                raise RuntimeError(f"bootstrap's last line is not the one expected: {boot['last_line']!r}")
            boot.update(customers=int(seeded["customers"]), events=int(seeded["events"]),
                        rejected=int(seeded["rejected"]), own_seconds=float(seeded["seconds"]),
                        fold_seconds=float(seeded["fold"]), writes_seconds=float(seeded["writes"]))  # fmt: skip
            if boot["customers"] == 0 or boot["events"] < 0.99 * lines:
                raise RuntimeError(f"bootstrap seeded too little: {boot['last_line']}")
            boots.append(boot)
            print(f"bootstrap {run}: {boot}", flush=True)
            shutil.rmtree(scratch / "boot")
        seeded_settings = settings_for(broker.bootstrap_servers, f"{tag}-{args.runs - 1}")
        ready = worker_ready(seeded_settings, scratch / "ready", sample_customers(source), history_end(source))
        print(f"worker after bootstrap: {ready}", flush=True)
        prefix = source
        if args.stream_events and args.stream_events < lines:
            prefix = scratch / "prefix.jsonl"
            with source.open("rb") as whole, prefix.open("wb") as part:
                for _, line in zip(range(args.stream_events), whole, strict=False):
                    part.write(line)
        stream = publish_and_stream(settings_for(broker.bootstrap_servers, f"{tag}-stream"), prefix, scratch / "s")
        print(f"publish and stream: { {k: v for k, v in stream.items() if k != 'committed_samples'} }", flush=True)
    finally:
        if broker is not None:
            broker.stop()
        shutil.rmtree(scratch, ignore_errors=True)

    replay_s = statistics.median(r["seconds"] for r in replays)
    boot_s = statistics.median(b["seconds"] for b in boots)
    writes_s = statistics.median(b["writes_seconds"] for b in boots)
    seeded_customers = boots[-1]["customers"]
    # start-up, checks, the audit and summary files: the wall time outside the fold and the writes
    other_s = round(statistics.median(b["seconds"] - b["fold_seconds"] - b["writes_seconds"] for b in boots), 2)
    projected = stream["records"] < lines
    whole_stream = (stream["first_commit_seconds"] + lines / stream["steady_events_per_second"]) if projected else None
    stream_s = whole_stream if projected else stream["seconds"]
    result = {
        "benchmark": "escalera bootstrap vs escalera replay vs publish-and-stream, same simulated history, one run",
        "command": f"python bench/bootstrap.py --events {args.events} --runs {args.runs}"
        + (f" --stream-events {args.stream_events}" if args.stream_events else "")
        + (f" --out {args.out}" if args.out != DEFAULT_OUT else ""),
        "history": {"lines": lines, "customers": customers, "days": 1095, "simulate_seconds": round(simulated)},
        "replay": {
            "seconds": {"median": replay_s, "samples": [r["seconds"] for r in replays]},
            "events_per_second": round(lines / replay_s),
            "peak_rss_megabytes": max(r["peak_rss_megabytes"] for r in replays),
            "cpu_seconds": [r["cpu_seconds"] for r in replays],
            "last_line": replays[-1]["last_line"],
        },
        "bootstrap": {
            "seconds": {"median": boot_s, "samples": [b["seconds"] for b in boots]},
            "events_per_second": round(lines / boot_s),
            "fold_seconds": statistics.median(b["fold_seconds"] for b in boots),
            "writes_seconds": writes_s,
            "other_seconds": other_s,
            "customers_seeded": seeded_customers,
            "events_folded": boots[-1]["events"],
            "lines_rejected": boots[-1]["rejected"],
            "states_written_per_second": round(seeded_customers / max(writes_s, 1e-9)),
            "peak_rss_megabytes": max(b["peak_rss_megabytes"] for b in boots),
            "cpu_seconds": [b["cpu_seconds"] for b in boots],
            "last_line": boots[-1]["last_line"],
        },
        "ratio_bootstrap_over_replay": round(boot_s / replay_s, 3),
        "target_ratio": 1.3,
        "worker_after_bootstrap": ready,
        "publish_and_stream": {
            **{k: v for k, v in stream.items() if k != "committed_samples"},
            "whole_file_streamed": not projected,
            "whole_file_seconds": round(stream_s, 1),
            "whole_file_seconds_is_projection": projected,
            "projection": "start-up to the first commit + the file's lines / the rate measured over the streamed "
            f"prefix of {stream['records']} lines (the history's first lines: fewer customers in the table)"
            if projected
            else None,
            "ratio_over_bootstrap": round(stream_s / boot_s, 1),
            "committed_samples": stream["committed_samples"],
        },
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": platform.platform()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("benchmark", "machine", "publish_and_stream")}))
    print(json.dumps({k: v for k, v in result["publish_and_stream"].items() if k != "committed_samples"}))


if __name__ == "__main__":
    main()
