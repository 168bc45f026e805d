"""The fold behind `escalera bootstrap` (engine.offline.history, issue 17): the order check with its grace, the
cutover's split of the decisions, states equal to the replay's without `finish`, and every midnight's population."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from engine.loyalty import DEFAULT_POLICY, DecisionEvent, Population, day_start
from engine.offline.history import Cutover, Folded, HistoryOutOfOrder, fold
from engine.offline.replay import DAY, Replay
from engine.offline.simulation import SimulationSpec, simulate
from schemas.construct import flat_json
from schemas.decoder import DecodeLimits
from schemas.events import EventRejected, InboundEvent
from tests.unit.loyalty_builders import at, interest, purchase, register

NOW = datetime(2026, 7, 1, tzinfo=UTC)
LIMITS = DecodeLimits(currencies=DEFAULT_POLICY.currencies)
GRACE = timedelta(seconds=1)


def write(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def line(event: InboundEvent) -> bytes:
    return event.model_dump_json().encode()


def shifted(event: InboundEvent, seconds: float) -> InboundEvent:
    return event.model_copy(update={"occurred_at": event.occurred_at + timedelta(seconds=seconds)})


def fold_files(
    files: list[Path], cutover: Cutover | None = None, grace: timedelta = GRACE
) -> tuple[Folded, list[EventRejected]]:
    rejected: list[EventRejected] = []
    every = cutover or Cutover(None, lambda _: None, lambda _: None)
    return fold(files, DEFAULT_POLICY, LIMITS, NOW, grace, every, rejected.append), rejected


def test_an_event_older_than_an_earlier_line_beyond_the_grace_stops_the_fold_naming_file_and_line(
    tmp_path: Path,
) -> None:
    first, second = purchase("a", 1), purchase("b", 2)
    behind = shifted(purchase("c", 2), -1.5)  # 1.5 s before the latest line: beyond the 1 s grace
    history = write(tmp_path / "history.jsonl", [line(first), line(second), b"not json", line(behind)])
    with pytest.raises(HistoryOutOfOrder) as refused:
        fold_files([history])
    message = str(refused.value)
    assert message.startswith(f"{history} line 4: the event {behind.event_id!r}"), message
    assert "ESCALERA_ARRIVAL_GRACE_SECONDS=1" in message and "sort the history by occurred_at" in message
    # A wider grace takes the same file: the event is applied, late, as the replay applies it.
    folded, rejected = fold_files([history], grace=timedelta(seconds=2))
    assert folded.replay.counts.events == 3 and folded.replay.counts.late == 1 and len(rejected) == 1


def test_events_within_the_grace_are_folded_and_files_are_checked_across_their_boundary(tmp_path: Path) -> None:
    first, second = purchase("a", 1), purchase("b", 2)
    within = shifted(purchase("c", 2), -0.9)
    history = write(tmp_path / "history.jsonl", [line(first), line(second), line(within)])
    folded, _ = fold_files([history])
    assert folded.replay.counts.events == 3 and folded.replay.counts.late == 1
    assert folded.replay.clock == second.occurred_at
    # The files are one history, oldest first: a second file starting before the first one's end is refused.
    older = write(tmp_path / "older.jsonl", [line(purchase("c", 0))])
    with pytest.raises(HistoryOutOfOrder, match=f"^{re.escape(str(older))} line 1: "):
        fold_files([history, older])
    folded, _ = fold_files([older, history])
    assert folded.replay.counts.events == 4


def test_a_redelivered_event_far_behind_is_a_duplicate_not_out_of_order(tmp_path: Path) -> None:
    """An export with redeliveries (the same event id again, later in the file) folds: the repeat changes nothing,
    as in the replay and the workers (`escalera simulate --duplicates` makes such files)."""
    first, second = purchase("a", 1), purchase("b", 30)
    history = write(tmp_path / "history.jsonl", [line(first), line(second), line(first)])
    folded, _ = fold_files([history])
    assert folded.replay.counts.events == 3 and folded.replay.counts.duplicates == 1
    assert folded.replay.counts.late == 0


def test_the_cutover_sends_decisions_before_publish_from_to_the_audit_and_the_rest_live(tmp_path: Path) -> None:
    lines = [line(register("a", 0)), line(purchase("a", 1)), line(interest("b", 1.5)), line(purchase("b", 3))]
    lines += [line(purchase(c, 3 + i)) for i, c in enumerate("ab" * 4, start=1)]
    history = write(tmp_path / "history.jsonl", lines)
    moment = at(3)  # exactly b's first purchase: what it decides is at the cutover, so published
    historic: list[DecisionEvent] = []
    live: list[DecisionEvent] = []
    cutover = Cutover(moment, historic.append, live.append)
    fold_files([history], cutover)
    assert historic and live
    assert all(d.occurred_at < moment for d in historic)
    assert all(d.occurred_at >= moment for d in live)
    assert any(d.occurred_at == moment and d.customer_id == "b" and d.type == "perk.granted" for d in live)
    assert (cutover.held, cutover.published) == (len(historic), len(live))
    # Together they are every decision the replay makes, once each, in its order.
    everything: list[DecisionEvent] = []
    fold_files([history], Cutover(None, everything.append, lambda d: pytest.fail(f"published: {d}")))
    assert [flat_json(d) for d in historic + live] == [flat_json(d) for d in everything]
    nothing_live = Cutover(None, lambda _: None, lambda d: pytest.fail(f"published: {d}"))
    fold_files([history], nothing_live)
    assert (nothing_live.held, nothing_live.published) == (len(everything), 0)


def test_the_fold_ends_with_the_replays_states_without_its_final_sweep(tmp_path: Path) -> None:
    lines = list(simulate(SimulationSpec(customers=150, days=400, seed=3, malformed=0.02)))
    history = write(tmp_path / "history.jsonl", lines)
    decisions: list[DecisionEvent] = []
    told: list[int] = []
    rejected: list[EventRejected] = []
    cutover = Cutover(None, decisions.append, lambda _: None)
    folded = fold([history], DEFAULT_POLICY, LIMITS, NOW, GRACE, cutover, rejected.append, told.append)

    replayed: list[DecisionEvent] = []
    dead: list[EventRejected] = []
    replay = Replay(DEFAULT_POLICY, LIMITS, NOW, replayed.append, dead.append)
    for raw in lines:
        replay.feed(raw)  # and no `finish`: a worker that streamed the history has not swept past its last event

    assert folded.replay.clock == replay.clock
    assert folded.replay.states.keys() == replay.states.keys()
    for customer_id, state in replay.states.items():
        assert folded.replay.states[customer_id].to_json() == state.to_json(), customer_id
    assert [flat_json(d) for d in decisions] == [flat_json(d) for d in replayed]
    assert [r.model_dump_json() for r in rejected] == [r.model_dump_json() for r in dead] != []
    assert folded.replay.counts == replay.counts
    assert sum(told) == history.stat().st_size


def population(customers: int) -> Population:
    return Population(Decimal(customers), Decimal(customers), customers)


def test_midnight_populations_cover_every_midnight_quiet_ones_with_the_last_population_before_them() -> None:
    replay = Replay(DEFAULT_POLICY, LIMITS, NOW, lambda _: None, lambda _: None)
    first = datetime(2026, 3, 1, tzinfo=UTC)
    classified = {first: population(1), first + 3 * DAY: population(2), first + 4 * DAY: population(3)}
    replay.clock = first + 6 * DAY + timedelta(hours=13)
    yielded = list(Folded(replay, classified).midnight_populations())
    assert yielded == [
        (first, population(1)),
        (first + DAY, population(1)),
        (first + 2 * DAY, population(1)),
        (first + 3 * DAY, population(2)),
        (first + 4 * DAY, population(3)),
        (first + 5 * DAY, population(3)),
        (first + 6 * DAY, population(3)),  # the last midnight passed: the one before the history's last event
    ]
    assert list(Folded(replay, {}).midnight_populations()) == []  # no midnight classified: nothing to seed
    replay.clock = None
    assert list(Folded(replay, classified).midnight_populations()) == []


def test_a_folded_history_with_quiet_days_yields_each_midnight_up_to_its_last_event(tmp_path: Path) -> None:
    lines = [line(purchase("a", 0)), line(purchase("b", 1)), line(purchase("a", 2, amount="90"))]
    lines += [line(interest("c", 40)), line(purchase("b", 75.5))]
    history = write(tmp_path / "history.jsonl", lines)
    folded, _ = fold_files([history])
    classified = folded.populations
    yielded = list(folded.midnight_populations())
    days = [day for day, _ in yielded]
    assert days[0] == min(classified) and days[-1] == day_start(at(75.5))
    assert days == [days[0] + n * DAY for n in range(len(days))]  # none missing
    assert len(yielded) > len(classified)  # the replay skipped quiet midnights: they are filled in
    last = None
    for day, found in yielded:
        last = classified.get(day, last)
        assert found == last, day
