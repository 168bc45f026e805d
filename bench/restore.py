"""Restoring a worker's table of many customers from its changelog, the worker's peak memory, and a second worker
taking over a killed worker's partitions.

Fills the `customers` table's changelog with N customer states (the states a replay of a simulated shop ends
with, copied under new customer ids, each written once as a worker would), once per run, then runs the phases
chosen with `--phases` (default all three, in this order), one run each:

empty (`empty_data_directory` in the JSON): a worker started on an empty data directory,
- restore: seconds from the worker's start until Faust reports its tables restored (its log);
- ready: seconds from the start until a purchase published at the start has produced its welcome perk
  (restore, then learning the owned customers' due days and clocks, then the event itself);
- the first midnight after the start (every restored customer's spend and volume settled): seconds from a purchase
  published the next day to its perk, and the worker's log line for that midnight;
- the worker's peak resident memory (VmHWM) at the end.

restart (`after_kill_9_with_its_data_directory`; needs the empty phase, whose worker it kills): kill -9, and the
same worker started again on the data directory it kept: seconds to a new purchase's perk from the restart, to its
joining the group (it removes the member its killed run left, engine/stream/membership.py, instead of waiting for
that member's session to time out), to Faust's "Restore complete", to its log line on the customers it learned
from the table (and how long that took), whether the local tables were discarded, and its peak memory.

failover (`failover_to_a_standby`; issue 18, target 5: a second worker takes over a killed worker's partitions of
a 1,000,000-customer table in < 30 s): workers A and B start together, each on an empty data directory of its
own, in one group with Faust's standby replicas (`table_standby_replicas`, Faust's default 1, which
engine/stream/app.py leaves as it is: each worker keeps a copy of the other's partitions, read from the changelog,
and a worker taking a partition over restores it from its copy, reading only what the copy lacks).
- ready: seconds from the start to the perk of a new customer's purchase routed to a partition A owns, and
  likewise for B (which worker owns which partition: its last "owning partitions [...]" log line);
- the standbys caught up: seconds from the start until each worker's local copy of every partition it does not own
  has applied the changelog up to its end, save what Faust holds in its standby buffer (up to
  `standby_buffer_size`, 1,000 records per table, applied when the buffer is full or at the next rebalance, so a
  quiet changelog never has its last records applied). How far each copy has applied is read from the store's own
  record of it (Faust's persisted offset in each partition's RocksDB, opened read-only), only once the worker's CPU
  has gone quiet (the read costs a RocksDB open); the moment it caught up is then its stores' last write (the
  latest change of their write-ahead logs), not the moment the check saw it;
- what the standbys cost: each worker's peak and current resident memory (VmHWM, VmRSS) and the size of its data
  directory once both have caught up and idled `IDLE_SECONDS`; the CPU seconds each worker used from the start to
  the standbys caught up, during its own standby catch-up (from its last "Starting standby partitions..." to
  caught up) and while both idle for `IDLE_SECONDS` (/proc/PID/stat utime + stime, sampled every half second).
  A fuller throughput comparison (the stream benchmark with two workers, with and without standbys) is not made;
- then kill -9 of A, and at once a purchase of a new customer routed to a partition A owned: seconds from the kill
  to its perk (the failover time), to B's "Joined group", to B's "owning partitions" line that includes A's
  partitions, to B's "Restore complete"; B's peak memory after the kill (VmHWM reset through /proc/PID/clear_refs
  just before it), and B's warnings and errors after the kill. The group notices the killed worker only when its
  session times out, so the failover time is at least ESCALERA_SESSION_TIMEOUT_SECONDS: `--session-timeout`
  sets it for every worker of the run (default: the setting's default, 20 s), and the JSON says which was in force.

Default settings otherwise (8 partitions, as a user's first worker has), save the wall clock when idle, off as in
every bench/stream.py worker: the probes' event times move the workers' clocks (the first on the day the states are
as of, the others just after the next midnight).

Every phase uses the same app id, hence the same changelog (Faust names it after the app id) and group: filling a
changelog of a million states costs minutes, a fresh app id per phase would cost one fill each. The phases do not
overlap (each stops its workers before the next starts; a SIGTERM leaves the group at once), the group's committed
offsets only mean the inbound records already handled are not handled again, and every probe is a new customer.

Run: .venv/bin/python bench/restore.py [--customers 1000000] [--phases empty,restart,failover]
     [--session-timeout SECONDS]
Writes bench/results/restore.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from stream import start_worker  # bench/stream.py: this script's folder is on the import path

from engine.broker.local import start_broker
from engine.broker.partitioner import partition_of
from engine.broker.publish import route
from engine.broker.topics import TopicSpec, ensure_topics
from engine.loyalty import day_start
from engine.loyalty.state_codec import pack
from engine.offline.state_dictionary import shop_states
from engine.settings import Settings, load_settings
from engine.stream.app import create_app

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("empty", "restart", "failover")
IDLE_SECONDS = 20.0  # both failover workers idle, standbys caught up: their CPU use then
STANDBY_BUFFER = 1000  # Faust's standby_buffer_size for the customers table (its recovery_buffer_size default)
QUIET_CPU = 0.3  # a worker using less of a core than this over the last QUIET_WINDOW seconds has gone quiet
QUIET_WINDOW = 3.0
WAIT = 1800.0  # seconds any one wait may take before the run gives up


def template_states(customers: int) -> tuple[list[tuple[str, bytes]], datetime]:
    """Final states of a replayed simulation, (customer_id, state JSON: compressed once its id is changed), and the
    latest of their clocks (the last event of the simulated shop)."""
    states = shop_states(11, customers, 365)  # the shop the state dictionary was not trained on
    return [(state.customer_id, state.to_json()) for state in states], max(state.clock for state in states)


def fill_changelog(settings: Settings, customers: int) -> tuple[int, float, datetime]:
    """Write `customers` states to the table's changelog, keyed (and so partitioned) like the worker's own; returns
    the bytes written, the seconds it took, and the time the states are as of."""
    templates, now = template_states(2000)
    changelog = settings.changelog_topic
    ensure_topics(settings, [TopicSpec(changelog, settings.topic_partitions, 1, {"cleanup.policy": "compact"})])
    producer = KafkaProducer(bootstrap_servers=list(settings.bootstrap_servers), linger_ms=20,
                             batch_size=1 << 20, max_request_size=8 << 20, acks=1)  # fmt: skip
    written = 0
    began = time.perf_counter()
    for n in range(customers):
        customer_id, raw = templates[n % len(templates)]
        new_id = f"r{n:07d}"
        value = pack(raw.replace(customer_id.encode(), new_id.encode()))  # stored as a worker stores it
        producer.send(changelog, key=new_id.encode(), value=value)
        written += len(value)
    producer.flush()
    producer.close()
    return written, time.perf_counter() - began, now


def probe_time(states_as_of: datetime, n: int) -> str:
    """The event time of probe `n`: probe 0 just after the restored states' latest clock (the same day: no midnight
    to pass before it), every later one just after the next midnight (the first midnight the worker passes, with
    every restored customer to settle, issue 15)."""
    if n == 0:
        return (states_as_of + timedelta(seconds=1)).isoformat()
    return (day_start(states_as_of) + timedelta(days=1, seconds=n)).isoformat()


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
                    return round(float(record.timestamp) / 1000 - since, 3)
    finally:
        consumer.close()
    raise RuntimeError(f"no perk for the purchase {event_id} in {timeout:.0f} s")


def customer_on(prefix: str, partitions: set[int], count: int) -> str:
    """A new customer id (and event id: `probe` uses one for both) whose purchases go to one of `partitions`."""
    n = 0
    while partition_of(f"{prefix}-{n}".encode(), count) not in partitions:
        n += 1
    return f"{prefix}-{n}"


def proc_status(pid: int, field: str) -> int:
    """A /proc/PID/status figure in bytes (VmHWM: peak resident memory, VmRSS: resident now)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc status")


def peak_rss_bytes(pid: int) -> int:
    return proc_status(pid, "VmHWM")


def reset_peak_rss(pid: int) -> bool:
    """Reset a process's VmHWM to its current resident memory (Linux: 5 to /proc/PID/clear_refs); False if refused."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (/proc/PID/stat utime, stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuSampler(threading.Thread):
    """Every half second, the CPU seconds each process has used so far: (epoch, {name: seconds})."""

    def __init__(self, pids: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.pids, self.samples = pids, list[tuple[float, dict[str, float]]]()
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            now: dict[str, float] = {}
            for name, pid in self.pids.items():
                with contextlib.suppress(OSError, IndexError, ValueError):  # gone (killed)
                    now[name] = cpu_seconds(pid)
            self.samples.append((time.time(), now))
            self.done.wait(0.5)

    def at(self, name: str, moment: float) -> float | None:
        """The process's CPU seconds at the sample nearest `moment`."""
        found = [(abs(stamp - moment), used[name]) for stamp, used in self.samples if name in used]
        return min(found)[1] if found else None

    def used(self, name: str, begin: float | None, end: float | None) -> float | None:
        if begin is None or end is None:
            return None
        first, last = self.at(name, begin), self.at(name, end)
        return None if first is None or last is None else round(last - first, 2)

    def rate(self, name: str, window: float) -> float | None:
        """The share of a core the process used over the last `window` seconds (None: not sampled that long)."""
        taken = [(stamp, used[name]) for stamp, used in self.samples if name in used]
        if not taken or taken[-1][0] - taken[0][0] < window:
            return None
        end_stamp, end_used = taken[-1]
        start_stamp, start_used = next(sample for sample in reversed(taken) if end_stamp - sample[0] >= window)
        return (end_used - start_used) / (end_stamp - start_stamp)


def line_stamp(line: str) -> float | None:
    """A console log line's time (epoch), None for a line without one (a traceback's)."""
    try:
        return time.mktime(time.strptime(line[1:20], "%Y-%m-%d %H:%M:%S")) + int(line[21:24]) / 1000
    except ValueError:
        return None


def log_seconds(log: str, pattern: str, start: float, after: bool = False) -> float | None:
    """Seconds from `start` (epoch) to the first log line matching `pattern` (`after`: the first at or after it)."""
    for line in log.splitlines():
        stamp = line_stamp(line) if re.search(pattern, line) else None
        if stamp is not None and (not after or stamp >= start):
            return round(stamp - start, 3)
    return None


OWNING = re.compile(r"owning partitions \[([0-9, ]*)\]")


def owned_partitions(log: str) -> list[tuple[float, set[int]]]:
    """Every "owning partitions [...]" line of a worker's log: (epoch, the partitions)."""
    found = []
    for line in log.splitlines():
        matched = OWNING.search(line)
        if matched and (stamp := line_stamp(line)) is not None:
            found.append((stamp, {int(p) for p in matched.group(1).replace(",", " ").split()}))
    return found


def message(line: str) -> str:
    """A log line without its time and process, no machine path in it."""
    return scrub(line.split("] ", 3)[-1])


def learned(log: str) -> list[str]:
    """The worker's lines on the customers it learned from the table (how many, of which partitions, how long)."""
    return [message(line) for line in log.splitlines() if "customers of partitions" in line]


def scrub(text: str) -> str:
    return re.sub(r"/(tmp|work|root|home)/\S*", "<path>", text)


def directory_bytes(path: Path) -> int:
    return sum((Path(root) / name).stat().st_size for root, _, names in os.walk(path) for name in names)


def applied_offsets(data_dir: Path, table: str) -> dict[int, int]:
    """How far each local partition store of `table` under a worker's data directory has applied its
    changelog: partition -> offset of the last record applied (Faust's persisted offset, b"__faust\\0offset__"),
    read through rocksdict read-only (no lock taken: the worker keeps writing meanwhile). A store caught mid-change
    (a file gone under the reader) is left out this time."""
    import rocksdict

    found: dict[int, int] = {}
    for path in data_dir.glob(f"v*/tables/{table}-*.db"):
        try:
            db = rocksdict.Rdict(str(path), options=rocksdict.Options(raw_mode=True),
                                 access_type=rocksdict.AccessType.read_only())  # fmt: skip
            try:
                offset = db.get(b"__faust\0offset__")
            finally:
                db.close()
        except Exception:  # rocksdict raises plain Exceptions
            continue
        if offset is not None:
            found[int(path.name[len(table) + 1 : -3])] = int(offset)
    return found


def last_write(data_dir: Path, table: str, partitions: set[int]) -> float | None:
    """When the local stores of `partitions` last applied a change (epoch): the latest modification of their
    write-ahead logs (RocksDB appends every write there first; a flush starts a new one)."""
    stamps = [wal.stat().st_mtime for p in partitions for wal in data_dir.glob(f"v*/tables/{table}-{p}.db/*.log")]
    return max(stamps, default=None)


def changelog_ends(settings: Settings) -> dict[int, int]:
    """The changelog's end offset per partition (the next offset to be written)."""
    consumer = KafkaConsumer(bootstrap_servers=list(settings.bootstrap_servers))
    try:
        topic = settings.changelog_topic
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in range(settings.topic_partitions)])
        return {tp.partition: end for tp, end in ends.items()}
    finally:
        consumer.close()


class Workers:
    """The workers this run starts (every one stopped in the end, whatever happens) and what they are given."""

    def __init__(self, settings: Settings, env: dict[str, str]) -> None:
        self.settings, self.env = settings, env
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, workdir: Path) -> subprocess.Popen[bytes]:
        """bench/stream.py's worker in `workdir`, with this run's extra environment."""
        workdir.mkdir(parents=True, exist_ok=True)
        worker = start_worker(self.settings, workdir, log_level="INFO", tick=1.0, extra=self.env)
        self.running.append(worker)
        return worker

    @staticmethod
    def stop(worker: subprocess.Popen[bytes]) -> None:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(120)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(30)

    def stop_all(self) -> None:
        for worker in self.running:
            self.stop(worker)


def empty_phase(settings: Settings, workers: Workers, workdir: Path, as_of: datetime) -> tuple[dict[str, Any], Any]:
    """A worker on an empty data directory: its figures, and the worker, still running (the restart kills it)."""
    started = time.time()
    worker = workers.start(workdir)
    # a new customer's purchase, published at once: its welcome perk says the worker is ready
    ready = probe(settings, "probe-1", probe_time(as_of, 0), started, timeout=WAIT)
    # another, the next day: the worker first passes that midnight, the first since its start, when every restored
    # customer's spend and volume is settled (issue 15's midnight, issue 18's peak)
    published = time.time()
    midnight = round(probe(settings, "probe-2", probe_time(as_of, 1), published, WAIT), 3)
    rss = peak_rss_bytes(worker.pid)
    log = (workdir / "worker.log").read_text(errors="replace")
    passes = [line.split("]: ", 1)[-1] if "]: " in line else line.split("] ", 3)[-1]
              for line in log.splitlines() if "midnight" in line and "passed" in line]  # fmt: skip
    return {
        "restore_seconds": log_seconds(log, r"Restore complete", started),
        "ready_seconds": ready,
        "learned": learned(log),
        "first_midnight_after_start": {"seconds_from_publish_to_perk": midnight, "log": [scrub(p) for p in passes[:1]]},
        "peak_rss_megabytes": round(rss / 1e6),
    }, worker


def wait_quiet(pid: int) -> float:
    """Wait until a process has used less than QUIET_CPU of a core over QUIET_WINDOW seconds; seconds waited."""
    began = time.time()
    samples = [(began, cpu_seconds(pid))]
    while time.time() - began < WAIT:
        time.sleep(0.5)
        samples.append((time.time(), cpu_seconds(pid)))
        window = [(t, used) for t, used in samples if t >= samples[-1][0] - QUIET_WINDOW]
        span = window[-1][0] - window[0][0]
        if span >= QUIET_WINDOW - 0.5 and (window[-1][1] - window[0][1]) / span < QUIET_CPU:
            return round(time.time() - began, 1)
    raise RuntimeError(f"the worker did not go quiet in {WAIT:.0f} s")


def midnights(log: str) -> list[str]:
    """The worker's lines on the midnights it passed (those that took over a second: logged at INFO)."""
    return [message(line) for line in log.splitlines() if "midnight" in line and "passed" in line]


def restart_phase(settings: Settings, workers: Workers, workdir: Path, worker: Any, as_of: datetime) -> dict[str, Any]:
    """kill -9 the empty phase's worker once it has gone quiet (the midnight's states written), and the same worker
    started again on the data directory it kept. (Killed while a midnight's states are still being written, the
    restarted worker passes that midnight again: at 1,000,000 customers, 29 s of classification and the writes.)"""
    quiet = wait_quiet(worker.pid)
    peak_before = round(peak_rss_bytes(worker.pid) / 1e6)
    worker.send_signal(signal.SIGKILL)
    worker.wait(60)
    restarted = time.time()
    worker = workers.start(workdir)
    try:
        again = probe(settings, "probe-3", probe_time(as_of, 2), restarted, timeout=WAIT)
        relog = (workdir / "worker.log").read_text(errors="replace")
        return {
            "ready_seconds": again,
            "joined_group_seconds": log_seconds(relog, r"Joined group", restarted),
            "restore_complete_seconds": log_seconds(relog, r"Restore complete", restarted),
            "killed_once_quiet_after_seconds": quiet,
            "killed_worker_peak_rss_megabytes": peak_before,
            "midnights_passed": midnights(relog),
            "tables_discarded": "discarding" in relog,
            "member_removed": "was removed, so the group does not wait" in relog,
            "learned": learned(relog),
            "peak_rss_megabytes": round(peak_rss_bytes(worker.pid) / 1e6),
        }
    finally:
        workers.stop(worker)


def failover_phase(settings: Settings, workers: Workers, workdir: Path, as_of: datetime) -> dict[str, Any]:
    """Workers A and B with standbys, kill -9 of A, B takes over (see the module's docstring)."""
    count = settings.topic_partitions
    dirs = {"a": workdir / "a", "b": workdir / "b"}
    started = time.time()
    procs = {name: workers.start(path) for name, path in dirs.items()}
    sampler = CpuSampler({name: proc.pid for name, proc in procs.items()})
    sampler.start()
    try:

        def logs() -> dict[str, str]:
            return {name: (path / "worker.log").read_text(errors="replace") for name, path in dirs.items()}

        def check_alive() -> None:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"worker {name.upper()} exited with {proc.returncode}:\n"
                                       f"{scrub(logs()[name][-3000:])}")  # fmt: skip

        def ownership() -> dict[str, set[int]] | None:
            """Each worker's partitions, from its last "owning partitions" line, once they split all between them."""
            found = {name: owned_partitions(log) for name, log in logs().items()}
            owned = {name: lines[-1][1] if lines else set() for name, lines in found.items()}
            a, b = owned["a"], owned["b"]
            return owned if a and b and not a & b and a | b == set(range(count)) else None

        # Both ready: each owns partitions, and a new customer's purchase on one of them has its perk. Checked
        # again after the probes: a rebalance meanwhile (B joining after A started alone) means asking again.
        deadline = time.monotonic() + WAIT
        ready: dict[str, float] = {}
        round_ = 0
        while True:
            check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the two workers did not share the partitions in {WAIT:.0f} s")
            owned = ownership()
            if owned is None:
                time.sleep(0.5)
                continue
            round_ += 1
            for name in ("a", "b"):
                event_id = customer_on(f"failover-ready-{name}{round_}", owned[name], count)
                ready[name] = probe(settings, event_id, probe_time(as_of, 3 + round_), started, WAIT)
            if ownership() == owned:
                break
        both_ready = time.time()

        # The standbys caught up: every partition a worker does not own has its local copy applied to the
        # changelog's end, but for Faust's standby buffer. Read from the stores only once the worker is quiet.
        caught_up: dict[str, float] = {}
        unapplied: dict[str, int] = {}
        while len(caught_up) < 2:
            check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the standbys did not catch up in {WAIT:.0f} s (unapplied: {unapplied})")
            time.sleep(1.0)
            for name in ("a", "b"):
                busy = sampler.rate(name, QUIET_WINDOW)
                if name in caught_up or busy is None or busy > QUIET_CPU:
                    continue
                standbys = set(range(count)) - owned[name]
                ends = changelog_ends(settings)
                applied = applied_offsets(dirs[name] / "tables", "customers")
                behind = sum(ends[p] - 1 - applied.get(p, -1) for p in standbys)
                unapplied[name] = behind
                if set(applied) >= standbys and behind < STANDBY_BUFFER:
                    caught_up[name] = last_write(dirs[name] / "tables", "customers", standbys) or time.time()
        standbys_started = {name: last_before(log, r"Starting standby partitions", caught_up[name])
                            for name, log in logs().items()}  # fmt: skip

        # Both idle with their standbys
        idle_from = time.time()
        time.sleep(IDLE_SECONDS)
        idle_to = time.time()
        check_alive()
        with_standbys = {
            name: {
                "partitions_owned": sorted(owned[name]),
                "partitions_standby": sorted(set(range(count)) - owned[name]),
                "ready_seconds": ready[name],
                "standby_started_seconds": seconds_from(started, standbys_started[name]),
                "standbys_caught_up_seconds": round(caught_up[name] - started, 3),
                "standby_records_unapplied": unapplied[name],
                "peak_rss_megabytes": round(peak_rss_bytes(proc.pid) / 1e6),
                "rss_megabytes": round(proc_status(proc.pid, "VmRSS") / 1e6),
                "data_directory_megabytes": round(directory_bytes(dirs[name] / "tables") / 1e6, 1),
                "cpu_seconds": {
                    "start_to_standbys_caught_up": sampler.used(name, started, caught_up[name]),
                    "standby_catch_up": sampler.used(name, standbys_started[name], caught_up[name]),
                    "idle": sampler.used(name, idle_from, idle_to),
                },
            }
            for name, proc in procs.items()
        }

        # kill -9 A; at once a new customer's purchase on one of A's partitions
        survivor = procs["b"]
        event_id = customer_on("failover-after-kill", owned["a"], count)
        reset = reset_peak_rss(survivor.pid)
        killed = time.time()
        procs["a"].send_signal(signal.SIGKILL)
        failover = probe(settings, event_id, probe_time(as_of, 4 + round_), killed, WAIT)
        procs["a"].wait(60)
        log = logs()["b"]
        took = [(stamp, part) for stamp, part in owned_partitions(log) if stamp >= killed and part >= owned["a"]]
        after = [line for line in log.splitlines() if (stamp := line_stamp(line)) is not None and stamp >= killed]
        troubles = list(dict.fromkeys(message(line) for line in after if "[WARNING]" in line or "[ERROR]" in line))
        after_kill = {
            "perk_seconds": failover,
            "joined_group_seconds": log_seconds(log, r"Joined group", killed, after=True),
            "owns_partitions_of_the_killed_seconds": round(took[0][0] - killed, 3) if took else None,
            "restore_complete_seconds": log_seconds(log, r"Restore complete", killed, after=True),
            "partitions_owned": sorted(took[0][1]) if took else None,
            "peak_rss_megabytes": round(peak_rss_bytes(survivor.pid) / 1e6),
            "peak_rss_is_since_the_kill": reset,  # else since B's start
            "rss_megabytes": round(proc_status(survivor.pid, "VmRSS") / 1e6),
            "warnings_and_errors": troubles[:10],
        }
        return {
            "target_seconds": 30,
            "standby_replicas": create_app(settings).app.conf.table_standby_replicas,  # as the workers have it
            "both_ready_seconds": round(both_ready - started, 3),
            "idle_seconds": round(idle_to - idle_from, 1),
            "workers": with_standbys,
            "after_kill_9_of_a": after_kill,
        }
    finally:
        sampler.done.set()
        for proc in procs.values():
            workers.stop(proc)


def seconds_from(start: float, moment: float | None) -> float | None:
    return None if moment is None else round(moment - start, 3)


def last_before(log: str, pattern: str, moment: float) -> float | None:
    """The time (epoch) of the last log line matching `pattern` before `moment`."""
    found = None
    for line in log.splitlines():
        if re.search(pattern, line) and (stamp := line_stamp(line)) is not None and stamp <= moment:
            found = stamp
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--phases", default=",".join(PHASES),
                        help=f"comma-separated, of {', '.join(PHASES)} (restart needs empty)")  # fmt: skip
    parser.add_argument("--session-timeout", type=float, default=None, metavar="SECONDS",
                        help="ESCALERA_SESSION_TIMEOUT_SECONDS for every worker (default: the setting's)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "restore.json")
    args = parser.parse_args()
    phases = [phase.strip() for phase in args.phases.split(",") if phase.strip()]
    if not phases or set(phases) - set(PHASES):
        parser.error(f"--phases: choose among {', '.join(PHASES)}")
    if "restart" in phases and "empty" not in phases:
        parser.error("--phases: restart kills the empty phase's worker, so it needs empty too")
    env = {} if args.session_timeout is None else {"ESCALERA_SESSION_TIMEOUT_SECONDS": str(args.session_timeout)}
    results: dict[str, Any] = {}
    broker = start_broker()
    try:
        tag = uuid.uuid4().hex[:6]
        settings = load_settings(
            {"ESCALERA_BOOTSTRAP_SERVERS": broker.bootstrap_servers, **env, "ESCALERA_APP_ID": f"restore-{tag}"}
        )  # fmt: skip (default partitions: 8)
        ensure_topics(settings)
        written, fill_seconds, as_of = fill_changelog(settings, args.customers)
        print(f"changelog: {args.customers} states, {written / 1e6:.0f} MB in {fill_seconds:.0f} s", flush=True)
        workers = Workers(settings, env)
        with tempfile.TemporaryDirectory() as scratch:
            try:
                if "empty" in phases:
                    results["empty"], worker = empty_phase(settings, workers, Path(scratch) / "single", as_of)
                    print(f"empty: {results['empty']}", flush=True)
                    if "restart" in phases:
                        results["restart"] = restart_phase(settings, workers, Path(scratch) / "single", worker, as_of)
                        print(f"restart: {results['restart']}", flush=True)
                    workers.stop(worker)
                if "failover" in phases:
                    results["failover"] = failover_phase(settings, workers, Path(scratch) / "failover", as_of)
            finally:
                workers.stop_all()
    finally:
        broker.stop()
    command = f"python bench/restore.py --customers {args.customers}"
    if phases != list(PHASES):
        command += f" --phases {','.join(phases)}"
    if args.session_timeout is not None:
        command += f" --session-timeout {args.session_timeout:g}"
    result = {
        "benchmark": "restore of the customers table from its changelog at start-up, restart after kill -9, "
        "failover to a standby; one run",
        "command": command,
        "customers": args.customers,
        "changelog_megabytes": round(written / 1e6),
        "phases": phases,
        "session_timeout_seconds": settings.session_timeout_seconds,
        "empty_data_directory": results.get("empty"),
        "after_kill_9_with_its_data_directory": results.get("restart"),
        "failover_to_a_standby": results.get("failover"),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": platform.platform()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("benchmark", "machine")}, indent=1))


if __name__ == "__main__":
    main()
