"""How a customer's state is stored (the worker's table, its RocksDB files and Kafka changelog, bootstrap seeds): its
JSON as a zstd frame compressed with a dictionary trained on realistic states (issue 18: 2,704 bytes → 232 at
the median on the simulated shop, seed 11, which the dictionary was not trained on).

- Writing: `pack(json)` compresses with the current dictionary (`CURRENT`), level `LEVEL`; the frame names the
  dictionary by its id (zstd's `write_dict_id`).
- Reading: `unpack(raw)` gives the JSON back. A frame is decompressed with the dictionary its id names, among every
  dictionary shipped in `state_dict/` (`<id>.zdict`): a new dictionary is added beside the old ones, never in their
  place, so states written with an old one stay readable. A value whose first byte is `{` is the plain JSON states
  were stored as before this codec, returned as it is: a data directory or changelog from before keeps working.
- The dictionaries are made by `python -m engine.offline.state_dictionary` (from the simulated shop's states).

The zstd contexts are made once, at import, and reused: they are not thread-safe. Every state is encoded and decoded
on the thread of its process's event loop (the worker's agent and its web pages share it; the CLI and the offline
tools are single-threaded); a caller on another thread must not use this module.
"""

from __future__ import annotations

from pathlib import Path

import zstandard

from engine.errors import EscaleraError

DICTIONARIES = Path(__file__).with_name("state_dict")  # <dict id>.zdict, one per dictionary ever shipped
CURRENT = 148627171  # the dictionary new states are written with
LEVEL = 3  # 3.8 µs and 232 bytes at the median; level 5: 9 µs and 221 bytes, level 9: 28 µs and 194 (issue 18)
MAGIC = b"\x28\xb5\x2f\xfd"  # a zstd frame's first bytes


class StateCodecError(EscaleraError):
    """A stored state that cannot be read: an unknown dictionary, or bytes that are neither JSON nor a zstd frame."""


def _load() -> dict[int, zstandard.ZstdCompressionDict]:
    found = {}
    for path in sorted(DICTIONARIES.glob("*.zdict")):
        dictionary = zstandard.ZstdCompressionDict(path.read_bytes())
        if str(dictionary.dict_id()) != path.stem:
            raise StateCodecError(
                f"the state dictionary {path} holds dictionary {dictionary.dict_id()}, not {path.stem}"
            )
        found[dictionary.dict_id()] = dictionary
    return found


class _Missing:
    """The compressor while the current dictionary's file is missing (as when the first one is being trained)."""

    def compress(self, data: bytes) -> bytes:
        raise StateCodecError(
            f"the current state dictionary {CURRENT} is missing: no {DICTIONARIES / f'{CURRENT}.zdict'}"
        )


_DICTIONARIES = _load()
_COMPRESSOR: zstandard.ZstdCompressor | _Missing = _Missing()
if CURRENT in _DICTIONARIES:
    _DICTIONARIES[CURRENT].precompute_compress(level=LEVEL)
    _COMPRESSOR = zstandard.ZstdCompressor(
        level=LEVEL, dict_data=_DICTIONARIES[CURRENT], write_checksum=False, write_content_size=True, write_dict_id=True
    )
_DECOMPRESSORS = {dict_id: zstandard.ZstdDecompressor(dict_data=d) for dict_id, d in _DICTIONARIES.items()}


def pack(json: bytes) -> bytes:
    """A state's JSON as stored: a zstd frame naming the dictionary it was compressed with."""
    return _COMPRESSOR.compress(json)


def unpack(raw: bytes) -> bytes:
    """A stored state's JSON: decompressed with the dictionary its frame names, or the plain JSON of before."""
    if raw[:1] == b"{":
        return raw  # written before states were compressed
    dict_id = _dict_id(raw)
    decompressor = _DECOMPRESSORS.get(dict_id)
    if decompressor is None:
        if dict_id == 0:
            raise StateCodecError("a stored state is a zstd frame that names no dictionary: not written by Escalera")
        raise StateCodecError(
            f"this state was compressed with the state dictionary {dict_id} ({dict_id}.zdict), which this version of "
            f"Escalera does not have (it reads {', '.join(map(str, sorted(_DECOMPRESSORS)))}): "
            f"was it written by a newer version?"
        )
    return decompressor.decompress(raw)


def _dict_id(raw: bytes) -> int:
    """The dictionary id in a zstd frame's header (0: none)."""
    if raw[:4] != MAGIC:
        raise StateCodecError(f"a stored state is neither JSON nor a zstd frame: it starts with {raw[:8]!r}")
    try:
        return int(zstandard.get_frame_parameters(raw).dict_id)
    except zstandard.ZstdError as exc:
        raise StateCodecError(f"a stored state has a damaged zstd frame header: {exc}") from exc
