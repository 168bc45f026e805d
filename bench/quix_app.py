"""The Quix Streams contender of bench/stream.py: a minimal stateful Quix app doing what the Faust floor does.

Reads the three inbound topics (raw bytes), concatenated into one dataframe so that the three share one state store
(Quix gives each dataframe of its own topic a store of its own), parses each record as JSON, updates one state per
customer (a get and a set: Quix's state is per message key, and the inbound records are keyed by customer id, see
`engine.broker.publish.route`; unreadable lines, unkeyed, share the state of the key None as they share the Faust
floor's key b"None") and produces the state as one output record per record to its own topic. No rules.

Quix's settings are its defaults but for those set in `main`, each for a fair comparison:
- Output records are stamped with the wall clock when produced, as the aiokafka and Faust producers of the other
  contenders do: as it ships, Quix gives an output record its input record's timestamp, and bench/stream.py measures
  throughput from the output records' timestamps.
- The consumer's poll timeout is the Faust floor's batch window (20 ms) instead of 1 s. Concatenated topics make Quix
  align partitions of the same number by timestamp: whenever one of them has nothing buffered it fetches a batch of
  up to 10,000 records (confluent-kafka's `consume`), which waits out the whole timeout when fewer are left. With 1 s,
  the backlog is processed in bursts a second apart near its end (10,354 events: ≈ 3,200 events/s against
  13,000–27,000 with 20 ms, a shared machine): waiting, not work, and counted by the throughput span.
  `--poll-timeout 1` gives Quix's default.
- Checkpoints (Quix's commit: its state's RocksDB write batch and changelog records, a producer flush, the offsets)
  follow Faust's commit policy, every 2.8 s or 10,000 records, instead of every 5 s: Quix writes its state to RocksDB
  and its changelog only at a checkpoint (one changelog record per key changed since the last one), where the Faust
  floor sends a changelog record per write; with 5 s, a short run's span could hold no checkpoint at all.

Run by bench/stream.py: python bench/quix_app.py --bootstrap HOST:PORT --group ID --state-dir DIR --output TOPIC
INBOUND_TOPIC...
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import orjson
from quixstreams import Application, State

KEY = "state"


def update(value: bytes, state: State[str, dict[str, Any]]) -> bytes:
    """One event: JSON parsed, the customer's state read and written once; the output record's value."""
    try:  # noqa: SIM105 (contextlib.suppress would add a context manager's cost per record)
        orjson.loads(value)
    except orjson.JSONDecodeError:
        pass  # parsed for its cost only, as in the Faust floor: the customer is the message key
    current: dict[str, Any] = state.get(KEY) or {"events": 0}
    current["events"] += 1
    state.set(KEY, current)
    return orjson.dumps(current)


def now_ms(value: Any, key: Any, timestamp: int, headers: Any) -> int:
    return time.time_ns() // 1_000_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--poll-timeout", type=float, default=0.02, help="seconds (Quix's default: 1.0)")
    parser.add_argument("inbound", nargs="+")
    args = parser.parse_args()
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",  # Quix's default is "latest": the backlog would never be read
        state_dir=args.state_dir,
        loglevel="WARNING",
        consumer_poll_timeout=args.poll_timeout,
        commit_interval=2.8,  # Faust's broker_commit_interval (Quix: 5 s)
        commit_every=10_000,  # Faust's broker_commit_every (Quix: 0, by time only)
        processing_guarantee="at-least-once",  # Quix's default, stated: as the Faust floor and the worker
        # librdkafka's default linger, stated: the same 5 ms as the raw loop's and Faust's producers
        producer_extra_config={"linger.ms": 5},
    )
    frames = [
        app.dataframe(app.topic(name, key_deserializer="bytes", value_deserializer="bytes")) for name in args.inbound
    ]
    sdf = frames[0]
    for frame in frames[1:]:
        sdf = sdf.concat(frame)
    sdf = sdf.apply(update, stateful=True).set_timestamp(now_ms)
    sdf.to_topic(app.topic(args.output, key_serializer="bytes", value_serializer="bytes"))
    app.run()


if __name__ == "__main__":
    main()
