"""A deterministic synthetic shop: customers of every archetype, as JSON lines of inbound events."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

DEFAULT_END = datetime(2026, 6, 30, tzinfo=UTC)

# archetype → share of the population
ARCHETYPES: dict[str, float] = {
    "browser": 0.22,
    "one_time": 0.18,
    "occasional": 0.18,
    "habitual": 0.12,
    "exclusive": 0.05,
    "advocate": 0.05,
    "complainer": 0.07,
    "lapsed": 0.08,
    "whale": 0.02,
    "registered_only": 0.03,
}
CURRENCIES = (("EUR", 0.6), ("USD", 0.2), ("GBP", 0.1), ("MXN", 0.05), ("ARS", 0.02), ("COP", 0.02), ("CLP", 0.01))
SCALE = {"EUR": 1, "USD": 1.1, "GBP": 0.85, "MXN": 20, "ARS": 1000, "COP": 4000, "CLP": 1000}
CATEGORIES = ("coffee", "tea", "cocoa", "accessories", "gifts")


@dataclass(frozen=True)
class SimulationSpec:
    """How big, how long, and how dirty the simulated input is."""

    customers: int
    days: int
    seed: int
    end: datetime = DEFAULT_END
    duplicates: float = 0.0
    malformed: float = 0.0


Progress = Callable[[str, int, int], None]
"""Told (stage, done, total) every so often: "customers" simulated of spec.customers (the longer part), then
"events" turned into lines of all the events (the duplicate and malformed lines mixed in are not counted)."""
_EVERY = 1000  # customers, and 10 x as many events, between two progress reports


def simulate(spec: SimulationSpec, on_progress: Progress | None = None) -> Iterator[bytes]:
    """Event lines in time order (duplicates and malformed lines mixed in as asked)."""
    told = on_progress or _untold
    rng = random.Random(spec.seed)
    start = spec.end - timedelta(days=spec.days)
    shop = _Shop(rng, start, spec.end, spec.seed)
    for number in range(spec.customers):
        shop.customer(f"c-{number:07d}", _pick(rng, ARCHETYPES))
        if (number + 1) % _EVERY == 0 or number + 1 == spec.customers:
            told("customers", number + 1, spec.customers)
    events = sorted(shop.events, key=lambda item: (item[0], item[1]))
    yield from _dirty(_lines(events, told), rng, spec)


def _lines(events: list[tuple[datetime, int, dict[str, Any]]], told: Progress) -> Iterator[bytes]:
    for number, (_, _, event) in enumerate(events, start=1):
        yield orjson.dumps(event)
        if number % (10 * _EVERY) == 0 or number == len(events):
            told("events", number, len(events))


def _untold(stage: str, done: int, total: int) -> None:
    pass


def write(spec: SimulationSpec, path: Path, on_progress: Progress | None = None) -> int:
    """Write the simulation to `path`; return the number of lines."""
    count = 0
    with path.open("wb") as out:
        for line in simulate(spec, on_progress):
            out.write(line + b"\n")
            count += 1
    return count


class _Shop:
    def __init__(self, rng: random.Random, start: datetime, end: datetime, seed: int) -> None:
        self.rng, self.start, self.end, self.seed = rng, start, end, seed
        self.events: list[tuple[datetime, int, dict[str, Any]]] = []
        self.count = 0
        self.span = (end - start).total_seconds()
        self.taken: set[tuple[str, datetime]] = set()

    def at(self, fraction: float) -> datetime:
        moment = self.start + timedelta(seconds=self.span * min(max(fraction, 0.0), 0.999999))
        return moment.replace(microsecond=0)

    def emit(self, when: datetime, customer: str, event_type: str, **fields: Any) -> None:
        when = when.replace(microsecond=0)
        # One event per customer per second: Kafka gives no order between topics, so two events of one
        # customer at the same instant on different topics could reach a worker in either order.
        while (customer, when) in self.taken:
            when += timedelta(seconds=1)
        if when >= self.end:
            return
        self.taken.add((customer, when))
        self.count += 1
        event = {
            "type": event_type,
            "event_id": f"e-{self.seed}-{self.count}",
            "customer_id": customer,
            "occurred_at": when.isoformat().replace("+00:00", "Z"),
            "schema_version": 1,
            **fields,
        }
        self.events.append((when, self.count, event))

    def customer(self, cid: str, archetype: str, referred_by: str | None = None) -> None:
        rng = self.rng
        joined = self.at(rng.random() * 0.6)
        kind = "internal" if rng.random() < 0.03 else "external" if rng.random() < 0.07 else "final"
        traits = {"has_need": rng.random() < 0.8, "can_afford": rng.random() < 0.7, "can_decide": rng.random() < 0.8}
        registration: dict[str, Any] = {"kind": kind, "traits": traits}
        if referred_by:
            registration["referred_by"] = referred_by
        self.emit(joined, cid, "customer.registered", **registration)
        if archetype == "registered_only":
            return
        currency = _pick(self.rng, dict(CURRENCIES))
        t = joined + timedelta(hours=rng.randint(1, 72))
        for _ in range(rng.randint(1, 4)):
            self.emit(t, cid, "customer.interest_shown", signal=rng.choice(["cart", "wishlist", "newsletter", "visit"]))
            t += timedelta(hours=rng.randint(1, 200))
        if archetype == "browser":
            return
        gap_days = {"one_time": 0, "occasional": 90, "habitual": 21, "exclusive": 18, "advocate": 25, "complainer": 40,
                    "lapsed": 20, "whale": 14}[archetype]  # fmt: skip
        purchases = {"one_time": 1, "occasional": rng.randint(2, 3), "lapsed": rng.randint(4, 8)}.get(archetype, 10_000)
        size = 500 if archetype == "whale" else 40
        bought = 0
        while bought < purchases and t < self.end:
            amount = max(1.0, rng.lognormvariate(0, 0.5) * size * SCALE[currency])
            self.emit(
                t, cid, "purchase.completed", order_id=f"o-{cid}-{bought}", amount=f"{amount:.2f}",
                currency=currency, category=rng.choice(CATEGORIES),
            )  # fmt: skip
            if rng.random() < 0.04:
                self.emit(t + timedelta(days=rng.randint(1, 10)), cid, "purchase.refunded",
                          order_id=f"o-{cid}-{bought}", amount=f"{amount:.2f}", currency=currency)  # fmt: skip
            bought += 1
            t += timedelta(days=max(1.0, rng.gauss(gap_days, gap_days / 4)) if gap_days else 1)
            self._feedback(cid, archetype, t - timedelta(days=1))
        if archetype == "exclusive":
            self.emit(
                joined + timedelta(days=rng.randint(30, 120)),
                cid,
                "feedback.received",
                channel="survey",
                nps=rng.randint(8, 10),
                csat=5,
                expectation="met",
                share_of_wallet=f"{rng.uniform(0.8, 1):.2f}",
            )
        if archetype == "advocate":
            self.emit(
                joined + timedelta(days=rng.randint(10, 60)),
                cid,
                "feedback.received",
                channel="review",
                nps=10,
                expectation="exceeded",
                public=True,
                audience=rng.choice([50, 800, 12_000]),
            )
            for friend in range(rng.randint(1, 3)):
                self.customer(f"{cid}-f{friend}", rng.choice(["one_time", "occasional", "habitual"]), referred_by=cid)

    def _feedback(self, cid: str, archetype: str, when: datetime) -> None:
        rng = self.rng
        if archetype == "complainer" and rng.random() < 0.5:
            formal = rng.random() < 0.3
            self.emit(when, cid, "feedback.received", channel="complaint_form" if formal else "support",
                      csat=rng.randint(1, 2), expectation="below", complaint=True, formal=formal)  # fmt: skip
        elif rng.random() < 0.15:
            self.emit(when, cid, "feedback.received", channel="survey", nps=rng.choice([6, 7, 8, 9, 10]),
                      csat=rng.randint(3, 5), expectation=rng.choice(["met", "exceeded", "met"]))  # fmt: skip


def _dirty(lines: Iterable[bytes], rng: random.Random, spec: SimulationSpec) -> Iterator[bytes]:
    broken: list[Callable[[bytes], bytes]] = [
        lambda line: line[: len(line) // 2],
        lambda line: line.replace(b'"amount":"', b'"amount":"-', 1) if b'"amount"' in line else b"[]",
        lambda line: line.replace(b'"type":"', b'"type":"x.', 1),
        lambda line: line.replace(b'"schema_version":1', b'"schema_version":7', 1),
        lambda line: line.replace(b'"currency":"', b'"currency":"X', 1) if b'"currency"' in line else b"{}",
        lambda line: line.replace(b'Z"', b'"', 1),
        lambda _: b"\xff\xfe not utf-8",
    ]
    recent: list[bytes] = []
    for line in lines:
        yield line
        recent.append(line)
        del recent[:-50]
        if spec.duplicates and rng.random() < spec.duplicates:
            yield rng.choice(recent)
        if spec.malformed and rng.random() < spec.malformed:
            yield rng.choice(broken)(line)


def _pick(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]
