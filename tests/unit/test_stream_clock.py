"""Stream time: sweeps at day boundaries per partition, late events never rewind, idle partitions follow."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from engine.stream.clock import QUIET_AFTER, StreamClock, day_start


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_day_start_is_utc_midnight_even_for_offset_times() -> None:
    # 01:30 at +02:00 is 23:30 UTC the day before.
    assert day_start(at("2026-03-02T01:30:00+02:00")) == datetime(2026, 3, 1, tzinfo=UTC)


def test_a_sweep_is_due_only_when_a_day_boundary_is_crossed() -> None:
    clock = StreamClock()
    assert clock.observe(0, at("2026-03-01T10:00:00+00:00")) is None  # first event
    assert clock.observe(0, at("2026-03-01T23:59:59+00:00")) is None  # same day
    assert clock.observe(0, at("2026-03-02T00:00:00+00:00")) == at("2026-03-02T00:00:00+00:00")
    # Several days at once: one sweep at the latest boundary (the core catches up each change at its own day).
    assert clock.observe(0, at("2026-03-09T08:00:00+00:00")) == at("2026-03-09T00:00:00+00:00")


def test_late_events_never_move_the_clock_back() -> None:
    clock = StreamClock()
    clock.observe(0, at("2026-03-05T10:00:00+00:00"))
    assert clock.observe(0, at("2026-03-01T10:00:00+00:00")) is None
    assert clock.now(0) == at("2026-03-05T10:00:00+00:00")
    assert clock.observe(0, at("2026-03-05T12:00:00+00:00")) is None  # still 5 March


def test_partitions_keep_their_own_time() -> None:
    clock = StreamClock()
    clock.observe(0, at("2026-03-01T10:00:00+00:00"))
    clock.observe(1, at("2026-03-01T10:00:00+00:00"))
    assert clock.observe(0, at("2026-03-04T10:00:00+00:00")) == at("2026-03-04T00:00:00+00:00")
    assert clock.now(1) == at("2026-03-01T10:00:00+00:00")
    assert clock.latest == at("2026-03-04T10:00:00+00:00")


def test_an_idle_partition_follows_the_latest_time_then_the_wall_clock_once_the_input_is_quiet() -> None:
    clock = StreamClock(wall_clock_when_idle=True)
    clock.observe(0, at("2026-03-01T10:00:00+00:00"))
    clock.observe(1, at("2026-03-03T10:00:00+00:00"))
    wall = at("2026-03-01T00:00:00+00:00")  # the wall clock behind stream time
    assert clock.idle_tick(0, wall, quiet_seconds=QUIET_AFTER) == at("2026-03-03T00:00:00+00:00")
    assert clock.idle_tick(0, wall, quiet_seconds=QUIET_AFTER) is None  # nothing new
    later_wall = at("2026-03-10T06:00:00+00:00")
    assert clock.idle_tick(0, later_wall, quiet_seconds=QUIET_AFTER) == at("2026-03-10T00:00:00+00:00")
    assert clock.now(0) == later_wall


def test_a_backfill_still_arriving_never_lets_an_idle_partition_jump_to_the_wall_clock() -> None:
    clock = StreamClock(wall_clock_when_idle=True)
    clock.observe(0, at("2026-03-01T10:00:00+00:00"))
    clock.observe(1, at("2026-03-03T10:00:00+00:00"))
    today = at("2026-09-30T12:00:00+00:00")  # the history is months behind the wall clock, and still coming
    assert clock.idle_tick(0, today, quiet_seconds=QUIET_AFTER - 1) == at("2026-03-03T00:00:00+00:00")
    assert clock.now(0) == at("2026-03-03T10:00:00+00:00")  # the latest event time, not today
    # once nothing has arrived for a while, the backfill is over: the clock reaches today
    assert clock.idle_tick(0, today, quiet_seconds=QUIET_AFTER) == at("2026-09-30T00:00:00+00:00")


def test_live_events_let_an_idle_partition_follow_the_wall_clock_at_once() -> None:
    clock = StreamClock(wall_clock_when_idle=True)
    clock.observe(1, at("2026-09-30T23:59:30+00:00"))  # a busy live shop: never quiet
    wall = at("2026-10-01T00:00:10+00:00")
    assert clock.idle_tick(0, wall, quiet_seconds=0.0) is None  # partition 0's first time: nothing to sweep
    assert clock.now(0) == wall
    clock.observe(1, at("2026-10-01T23:59:50+00:00"))
    assert clock.idle_tick(0, at("2026-10-02T00:00:05+00:00"), quiet_seconds=0.0) == at("2026-10-02T00:00:00+00:00")


def test_before_any_event_an_idle_partition_does_not_move() -> None:
    clock = StreamClock(wall_clock_when_idle=True)
    assert clock.idle_tick(0, at("2026-09-30T12:00:00+00:00"), quiet_seconds=3600.0) is None
    assert clock.now(0) is None  # a history may be about to arrive: its events must not look late


def test_without_the_wall_clock_an_idle_partition_stops_at_the_latest_event() -> None:
    clock = StreamClock(wall_clock_when_idle=False)
    clock.observe(0, at("2026-03-01T10:00:00+00:00"))
    clock.observe(1, at("2026-03-03T10:00:00+00:00"))
    assert clock.idle_tick(0, at("2030-01-01T00:00:00+00:00"), quiet_seconds=3600.0) == at("2026-03-03T00:00:00+00:00")
    assert clock.idle_tick(0, at("2030-01-02T00:00:00+00:00"), quiet_seconds=3600.0) is None
    assert clock.now(0) == at("2026-03-03T10:00:00+00:00")


@pytest.mark.parametrize("offset_hours", [-8, 0, 5])
def test_boundaries_are_the_same_whatever_the_offset_of_the_events(offset_hours: int) -> None:
    zone = timezone(timedelta(hours=offset_hours))
    clock = StreamClock()
    clock.observe(0, datetime(2026, 3, 1, 12, tzinfo=UTC).astimezone(zone))
    due = clock.observe(0, datetime(2026, 3, 2, 12, tzinfo=UTC).astimezone(zone))
    assert due == datetime(2026, 3, 2, tzinfo=UTC)
