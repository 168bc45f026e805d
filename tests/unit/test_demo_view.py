"""The demo's live view: rates of the recent past, lines that fit a terminal (issue 16)."""

from __future__ import annotations

import io
from collections import Counter

from rich.console import Console

from engine.cli.demo import RATE_WINDOW, RecentRates, _status, _view


def test_the_rates_are_of_the_recent_past_and_fall_to_zero_when_the_work_ends() -> None:
    rates, received = RecentRates(), Counter[str]()
    for second in range(11):  # 100 transitions and 20 perks a second for 10 s
        received.update(transitions=100 if second else 0, perks=20 if second else 0)
        rates.add(float(second), received)
    assert rates.per_second() == (100.0, 20.0)
    for second in range(11, 11 + int(RATE_WINDOW) + 1):  # then nothing
        rates.add(float(second), received)
    assert rates.per_second() == (0.0, 0.0)  # an average over the whole run would still say 1,000 / 16 s


def test_the_status_fits_80_columns_even_with_large_counts() -> None:
    received = Counter(transitions=12_345_678, perks=1_234_567, dead_letters=123_456)
    rates = RecentRates()
    rates.add(0.0, Counter())
    rates.add(1.0, received)
    lines = _status(received, 23_456_789, 23_456_789, rates, sep="\n").splitlines()
    assert len(lines) == 2 and all(len(line) <= 80 for line in lines), lines
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(_view({"c-1": "buyer"}, received, 5, 10, rates))
    text = console.export_text()
    assert "worker: 5/10 events committed, 123456 dead-lettered\noutputs: 12345678 transitions" in text


def test_the_title_stays_on_one_line_while_the_ladder_is_empty() -> None:
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(_view({}, Counter(), 0, 10, None))
    assert "Escalera: the loyalty ladder, live from the streaming worker" in console.export_text()
