"""How customer states are stored (engine/loyalty/state_codec.py): a zstd frame with a dictionary trained on states,
about a tenth of the JSON; the plain JSON of before still read; a dictionary this version lacks named in the error."""

from __future__ import annotations

import statistics

import pytest
import zstandard

from engine.loyalty import CustomerState
from engine.loyalty.state import StateSummary, summarize
from engine.loyalty.state_codec import CURRENT, DICTIONARIES, MAGIC, StateCodecError, pack, unpack
from engine.offline.state_dictionary import HELD_OUT, TRAINING, shop_states

# A state as the table stored it before the codec (plain JSON; the simulated shop, seed 11): it must still be read.
BEFORE = (
    b'{"customer_id":"c-0001215","clock":"2025-07-03T05:44:14+00:00","kind":"external","has_need":true,'
    b'"can_afford":true,"can_decide":true,"referred_by":null,"has_purchased":false,"last_purchase_at":null,'
    b'"last_interest_at":"2025-07-03T05:44:14+00:00","purchases":[],"feedback":[],"share_of_wallet":null,'
    b'"audience":0,"converted_referrals":0,"formal_complaints":0,"informal_complaints":0,"step":"potential",'
    b'"demotion_pending_since":null,"strong_since":null,"activity":"never","frequency":"none","volume":"none",'
    b'"volume_since":null,"satisfaction":"unknown","influence":"none","relationship":"unknown","permanent":false,'
    b'"risk":"none","median_gap_days":null,"due":"2026-07-04T00:00:00+00:00","perks":[],'
    b'"seen_ids":["e-11-11857","e-11-11858"],"decisions":[{"kind":"step","from":null,"to":"potential",'
    b'"rule":"ladder.potential","explanation":"Has not bought in the last 365 days but has the need, the means and '
    b'the authority to buy.","at":"2025-07-02T04:44:14+00:00"}]}'
)


def with_dict_id(frame: bytes, dict_id: int) -> bytes:
    """The frame with another dictionary id in its header (a 4-byte id field, as the current dictionary's)."""
    descriptor = frame[4]
    assert descriptor & 3 == 3, "the frame's dictionary id takes 4 bytes"
    at = 5 + (0 if descriptor & 0x20 else 1)  # after the window descriptor, absent from a single-segment frame
    return frame[:at] + dict_id.to_bytes(4, "little") + frame[at + 4 :]


def test_a_state_is_stored_as_a_zstd_frame_naming_the_current_dictionary() -> None:
    (state,) = [s for s in shop_states(11, 40, 365) if s.decisions][:1]
    stored = state.encode()
    assert stored.startswith(MAGIC) and zstandard.get_frame_parameters(stored).dict_id == CURRENT
    assert CustomerState.decode(stored) == state and unpack(stored) == state.to_json()
    assert (DICTIONARIES / f"{CURRENT}.zdict").is_file()


def test_states_stored_as_plain_json_before_the_codec_are_still_read() -> None:
    state = CustomerState.decode(BEFORE)
    assert state == CustomerState.from_json(BEFORE) and state.customer_id == "c-0001215"
    assert state.decisions[0]["rule"] == "ladder.potential"
    assert summarize(BEFORE) == StateSummary(**{name: getattr(state, name) for name in StateSummary.__struct_fields__})
    assert CustomerState.decode(state.encode()) == state  # written again: compressed


def test_a_dictionary_this_version_lacks_is_a_clear_error() -> None:
    stored = with_dict_id(pack(BEFORE), 123_456_789)
    for read in (CustomerState.decode, summarize, unpack):
        with pytest.raises(StateCodecError, match=r"state dictionary 123456789 \(123456789\.zdict\).*newer version"):
            read(stored)  # type: ignore[operator]


def test_bytes_that_are_neither_json_nor_a_state_frame_are_refused() -> None:
    with pytest.raises(StateCodecError, match="neither JSON nor a zstd frame"):
        CustomerState.decode(b"\x00garbage")
    with pytest.raises(StateCodecError, match="names no dictionary"):
        CustomerState.decode(zstandard.ZstdCompressor().compress(BEFORE))


def test_the_median_stored_state_of_a_shop_the_dictionary_was_not_trained_on_is_under_1_kb() -> None:
    seed, _, days = HELD_OUT
    assert seed not in {trained for trained, _, _ in TRAINING}
    states = shop_states(seed, 600, days)
    stored = [state.encode() for state in states]
    median = statistics.median(map(len, stored))
    assert median <= 1024, median  # issue 18's target; 232 bytes (of 2,704 as JSON) when the dictionary was made
    assert median <= statistics.median(len(state.to_json()) for state in states) / 5
    assert [CustomerState.decode(raw) for raw in stored] == states
