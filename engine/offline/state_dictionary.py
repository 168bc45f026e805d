"""Train the zstd dictionary customer states are stored with (engine/loyalty/state_codec.py) on the simulated shop.

Run: python -m engine.offline.state_dictionary [--out DIR]

The samples are the final states of replays of several simulated shops (`TRAINING`: seeds, sizes and spans, about
7,000 states), the way bench/restore.py makes its realistic states; seed 11, which the tests and bench/restore.py
measure on, is left out. Writes `<dict id>.zdict` to DIR (by default the package's `engine/loyalty/state_dict/`) and
prints its id and the sizes it gives seed 11's states. The same zstandard version gives the same bytes (and so the
same id) on every run; another version may train a different dictionary. To ship a new one: add its file beside the
old ones (states written with those must stay readable) and set `state_codec.CURRENT` to its id.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path

import orjson
import zstandard

from engine.loyalty import CustomerState, load_policy
from engine.loyalty.state_codec import DICTIONARIES, LEVEL
from engine.offline.replay import Replay
from engine.offline.simulation import SimulationSpec, simulate
from schemas.decoder import DecodeLimits

SIZE = 32 * 1024  # bytes; 16 KB: 260 bytes at the median, 32 KB: 232, 64 KB: 242 (seed 11's states, level 3)
TRAINING = ((1, 1500, 365), (2, 1000, 730), (3, 1000, 180), (4, 2000, 365), (5, 800, 1095))  # seed, customers, days
HELD_OUT = (11, 2000, 365)  # the shop the sizes are measured on (bench/restore.py's `template_states`)


def shop_states(seed: int, customers: int, days: int) -> list[CustomerState]:
    """The final states of a replay of a simulated shop, one day after its last event."""
    policy = load_policy(None)
    lines = list(simulate(SimulationSpec(customers, days, seed=seed)))
    latest = max(orjson.loads(line)["occurred_at"] for line in lines if line.startswith(b"{"))
    now = datetime.fromisoformat(latest) + timedelta(days=1)
    replay = Replay(policy, DecodeLimits(currencies=policy.currencies), now, lambda _: None, lambda _: None)
    for line in lines:
        replay.feed(line)
    replay.finish()
    return list(replay.states.values())


def train(shops: Iterable[tuple[int, int, int]] = TRAINING, size: int = SIZE) -> zstandard.ZstdCompressionDict:
    """A dictionary trained on the states (as JSON) of the simulated `shops`."""
    samples: list[bytes | bytearray | memoryview] = [state.to_json() for shop in shops for state in shop_states(*shop)]
    return zstandard.train_dictionary(size, samples, level=LEVEL, threads=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DICTIONARIES)
    args = parser.parse_args()
    dictionary = train()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{dictionary.dict_id()}.zdict"
    path.write_bytes(dictionary.as_bytes())
    compressor = zstandard.ZstdCompressor(level=LEVEL, dict_data=dictionary, write_checksum=False, write_dict_id=True)
    states = [state.to_json() for state in shop_states(*HELD_OUT)]
    old, new = [len(json) for json in states], [len(compressor.compress(json)) for json in states]
    print(
        f"wrote {path} (dictionary {dictionary.dict_id()}, {len(dictionary.as_bytes())} bytes); seed {HELD_OUT[0]}'s "
        f"{len(states)} states: median {statistics.median(new):.0f} bytes (JSON {statistics.median(old):.0f}), "
        f"mean {statistics.mean(new):.0f} (JSON {statistics.mean(old):.0f})"
    )


if __name__ == "__main__":
    main()
