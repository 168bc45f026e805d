"""What if: one history under the current policy and under a candidate, compared before the candidate is rolled out.

One pass over the file: each line is read once and fed to two `Replay`s, one per policy, side by side. Each replay
decodes the line itself: the two policies may accept different currencies (and so different lines), and decoding
is a few per cent of a replay's time (0.05 s of the 1.7 s a 20,700-line shop takes), so decoding once would save
little and need a second way into `Replay`. The outputs (`moves.jsonl`, `matrix.json`, `perks.json`, `summary.md`,
`whatif.png`, and `switch.jsonl`) are byte-identical for the same file, policies and partition count, as the
replay's are.

Besides where each customer would end had the candidate always been the policy, it predicts what rolling the
candidate out to the workers at that moment decides (issue 20, item 2): every customer's state under the current
policy re-evaluated under the candidate by the function the workers run at a switch (engine/loyalty/switch.py), in
the order they do (by customer id, per partition; budgets counted in the current replay's ledgers, as the workers'
are in theirs). `switch.jsonl` holds those decisions exactly as the workers publish them.
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, get_args

import orjson

from engine.errors import EscaleraError
from engine.loyalty import Policy
from engine.loyalty.outcome import Published
from engine.loyalty.switch import switch_in_place
from engine.loyalty.view import view
from engine.offline.lines import read_lines
from engine.offline.outputs import _freeze_survivors
from engine.offline.replay import DEFAULT_PARTITIONS, Replay, ReplayCounts
from schemas.construct import flat_json
from schemas.decoder import DecodeLimits
from schemas.events import STEPS, PerkType

# What a customer's result is made of: the step and every classification the customer view carries, in its order
# (kind is given at registration, so no policy moves it; it is compared all the same, as the view carries it).
DIMENSIONS = ("step", "activity", "frequency", "volume", "satisfaction", "influence", "relationship", "kind",
              "permanent", "risk")  # fmt: skip
PERK_TYPES: tuple[str, ...] = get_args(PerkType)
TOP = 5  # flows listed in the summary


@dataclass(frozen=True)
class Side:
    """One policy of the comparison: its file's name (None: the defaults), its rules, what its replay decodes."""

    file: str | None
    policy: Policy
    limits: DecodeLimits

    @property
    def name(self) -> str:
        return self.file or "the default policy"

    @property
    def quoted(self) -> str:
        """The name in Markdown: a file's name as code."""
        return f"`{self.file}`" if self.file else self.name


@dataclass
class Comparison:
    """Both finished replays and what the outputs are computed from: every customer's dimensions on each side."""

    current: Side
    candidate: Side
    counts: tuple[ReplayCounts, ReplayCounts]
    results: tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]  # customer -> dimension -> value
    as_of: datetime
    source: str
    switch: tuple[Published, ...] = ()  # what rolling the candidate out at `as_of` decides (engine/loyalty/switch.py)

    @property
    def customers(self) -> list[str]:
        return sorted(self.results[0].keys() | self.results[1].keys())

    def moves(self) -> list[dict[str, Any]]:
        """One move per (customer, dimension) whose value differs, by customer id, then in `DIMENSIONS` order."""
        before, after = self.results
        lines = []
        for customer_id in self.customers:
            a, b = before.get(customer_id, {}), after.get(customer_id, {})
            for dimension in DIMENSIONS:
                if a.get(dimension) != b.get(dimension):
                    lines.append({"customer_id": customer_id, "dimension": dimension,
                                  "from": a.get(dimension), "to": b.get(dimension)})  # fmt: skip
        return lines

    def matrix(self) -> dict[str, dict[str, int]]:
        """Customers by step under the current policy (rows) and under the candidate (columns), every step in both."""
        table: dict[str, dict[str, int]] = {row: dict.fromkeys(STEPS, 0) for row in STEPS}
        before, after = self.results
        for customer_id in before.keys() & after.keys():
            table[before[customer_id]["step"]][after[customer_id]["step"]] += 1
        return table


def compare_file(
    source: Path,
    current: Side,
    candidate: Side,
    now: datetime,
    as_of: datetime | None = None,
    on_line: Callable[[int], None] | None = None,
    partitions: int = DEFAULT_PARTITIONS,
) -> Comparison:
    """Replay `source` under both policies in one pass; every customer's view as of `as_of` (default: the latest
    event time), as `escalera replay` writes it to customers.jsonl."""
    replays = [Replay(side.policy, side.limits, now, _ignore, _ignore, partitions) for side in (current, candidate)]
    replays[0].on_midnight = _freeze_survivors  # (freezes what both hold: the collector's generations are global)
    try:
        for line in read_lines(source):
            for replay in replays:
                replay.feed(line)
            if on_line is not None:
                on_line(len(line) + 1)
        for replay in replays:
            replay.finish(as_of)
    finally:
        gc.unfreeze()
    moment = as_of or replays[0].clock or now
    results = tuple(
        {cid: _dimensions(view(state, side.policy, moment)) for cid, state in replay.states.items()}
        for side, replay in zip((current, candidate), replays, strict=True)
    )
    switch = predict_switch(replays[0], candidate.policy)
    return Comparison(current, candidate, (replays[0].counts, replays[1].counts), (results[0], results[1]), moment,
                      source.name, switch)  # fmt: skip


def predict_switch(replay: Replay, policy: Policy) -> tuple[Published, ...]:
    """What workers that ran the replay's policy decide when restarted with `policy`: each customer, by id, re-
    evaluated at their own clock (a copy: the replay's states are left as they are). The grants are counted in the
    replay's budget ledgers, which the workers hold too (none under a policy without budgets)."""
    ledger = replay.ledgers if policy.budgeted else None
    decided: list[Published] = []
    for customer_id in sorted(replay.states):
        decided.extend(switch_in_place(replay.states[customer_id].copy(), policy, ledger).published())
    return tuple(decided)


def _ignore(_: object) -> None:
    """The decisions and dead letters themselves are not compared: only where each customer ends, and the counts."""


def _dimensions(customer: dict[str, Any]) -> dict[str, Any]:
    return {dimension: customer[dimension] for dimension in DIMENSIONS}


def write_whatif(comparison: Comparison, out: Path) -> dict[str, Any]:
    """The five outputs into `out`; returns perks.json's content (the command's last line quotes it)."""
    out.mkdir(parents=True, exist_ok=True)
    moves = comparison.moves()
    (out / "moves.jsonl").write_bytes(b"".join(orjson.dumps(move) + b"\n" for move in moves))
    matrix = comparison.matrix()
    (out / "matrix.json").write_bytes(_json(matrix_report(comparison, matrix)))
    perks = perks_report(comparison)
    (out / "perks.json").write_bytes(_json(perks))
    (out / "summary.md").write_text(summary_markdown(comparison, moves, matrix, perks))
    draw_migration(matrix, out / "whatif.png", comparison, _perk_footer(perks))
    (out / "switch.jsonl").write_bytes(b"".join(flat_json(decision) + b"\n" for decision in comparison.switch))
    return perks


def _json(data: dict[str, Any]) -> bytes:
    """Indented, in the order built (steps in ladder order, perks in the contract's): readable as a table."""
    return orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n"


def matrix_report(comparison: Comparison, matrix: dict[str, dict[str, int]]) -> dict[str, Any]:
    return {
        "as_of": comparison.as_of.isoformat(),
        "rows": f"step under the current policy ({comparison.current.name}, {comparison.current.policy.version})",
        "columns": f"step under the candidate ({comparison.candidate.name}, {comparison.candidate.policy.version})",
        "customers": sum(sum(row.values()) for row in matrix.values()),
        "matrix": matrix,
    }


def perks_report(comparison: Comparison) -> dict[str, Any]:
    """Per perk type: granted, held back (in all and by reason) and revoked under each policy, and the difference.
    A cost is the perks granted times the perk's price in the policy's `perk_costs`; a price given in only one of
    the two files prices both sides (costs set only in the candidate still compare). Revocations are counted
    beside the cost, not taken out of it. Money is Decimal throughout, written as strings."""
    current, candidate = comparison.current.policy, comparison.candidate.policy
    priced = current.perk_costs.keys() | candidate.perk_costs.keys()
    if priced and current.currency.base != candidate.currency.base:
        raise EscaleraError(
            f"the current policy counts money in {current.currency.base}, the candidate in "
            f"{candidate.currency.base}: their perk costs cannot be compared"
        )
    sides = [_perk_counts(counts) for counts in comparison.counts]
    seen = set().union(*(side.keys() for side in sides), priced)
    perks: dict[str, Any] = {}
    for perk in (p for p in PERK_TYPES if p in seen):
        entry: dict[str, Any] = {}
        for key, policy, other, side in (("current", current, candidate, sides[0]),
                                         ("candidate", candidate, current, sides[1])):  # fmt: skip
            entry[key] = dict(side.get(perk, _EMPTY))
            price = policy.perk_costs.get(perk, other.perk_costs.get(perk))  # type: ignore[call-overload]
            if price is not None:
                entry[key]["unit_cost"] = price
                entry[key]["cost"] = price * entry[key]["granted"]
        entry["difference"] = _difference(entry["current"], entry["candidate"])
        perks[perk] = entry
    totals = {key: _total(entry[key] for entry in perks.values()) for key in ("current", "candidate")}
    totals["difference"] = _difference(totals["current"], totals["candidate"])
    at_switch = Counter(d.perk for d in comparison.switch if d.type == "perk.granted")
    for perk, n in at_switch.items():
        entry = perks.setdefault(perk, {"current": dict(_EMPTY), "candidate": dict(_EMPTY),
                                        "difference": _difference(_EMPTY, _EMPTY)})  # fmt: skip
        entry["at_switch"] = {"granted": n}
        price = candidate.perk_costs.get(perk, current.perk_costs.get(perk))
        if price is not None:
            entry["at_switch"]["cost"] = price * n
    totals["at_switch"] = _switch_total(perks.values())
    report = {"currency": candidate.currency.base if priced else None, "perks": perks, "total": totals}
    result: dict[str, Any] = orjson.loads(orjson.dumps(report, default=str))  # Decimals as strings, exactly
    return result


_EMPTY: dict[str, Any] = {"granted": 0, "held_back": 0, "held_back_by_reason": {}, "revoked": 0}


def _switch_total(entries: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The perks the switch grants, and their cost (of those with a price)."""
    listed = [e["at_switch"] for e in entries if "at_switch" in e]
    total: dict[str, Any] = {"granted": sum(e["granted"] for e in listed)}
    costs = [e["cost"] for e in listed if "cost" in e]
    if costs:
        total["cost"] = sum(costs, Decimal(0))
    return total


def _perk_counts(counts: ReplayCounts) -> dict[str, dict[str, Any]]:
    """A replay's perk counts per perk type (its summary.json's perks_granted, perks_suppressed, perks_revoked)."""
    table: dict[str, dict[str, Any]] = {}

    def entry(perk: str) -> dict[str, Any]:
        return table.setdefault(perk, {**_EMPTY, "held_back_by_reason": {}})

    for perk, n in counts.perks_granted.items():
        entry(perk)["granted"] += n
    for key, n in sorted(counts.perks_suppressed.items()):
        perk, _, reason = key.partition(":")
        entry(perk)["held_back"] += n
        entry(perk)["held_back_by_reason"][reason] = n
    for perk, n in counts.perks_revoked.items():
        entry(perk)["revoked"] += n
    return table


def _difference(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Candidate minus current, for the counts and (when both sides have one) the cost."""
    difference = {key: after[key] - before[key] for key in ("granted", "held_back", "revoked")}
    if "cost" in before and "cost" in after:
        difference["cost"] = after["cost"] - before["cost"]
    return difference


def _total(entries: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The sums over perk types; the cost of those with a price (none: no cost)."""
    listed = list(entries)
    total: dict[str, Any] = {key: sum(e[key] for e in listed) for key in ("granted", "held_back", "revoked")}
    costs = [e["cost"] for e in listed if "cost" in e]
    if costs:
        total["cost"] = sum(costs, Decimal(0))
    return total


def summary_markdown(
    comparison: Comparison, moves: list[dict[str, Any]], matrix: dict[str, dict[str, int]], perks: dict[str, Any]
) -> str:
    """A short report for people: who moves and where to, what it costs, and which dimensions change most."""
    current, candidate = comparison.current, comparison.candidate
    customers = sum(sum(row.values()) for row in matrix.values())
    rank: dict[str, int] = {step: i for i, step in enumerate(STEPS)}
    flows = sorted(((n, a, b) for a, row in matrix.items() for b, n in row.items() if a != b and n),
                   key=lambda f: (-f[0], rank[f[1]], rank[f[2]]))  # fmt: skip
    movers = sum(n for n, _, _ in flows)
    up = sum(n for n, a, b in flows if rank[b] > rank[a])
    differing = len({move["customer_id"] for move in moves})
    lines = [
        f"# What if {candidate.quoted} replaced {current.quoted}",
        "",
        f"`{comparison.source}` as of {comparison.as_of.isoformat()}: {customers} customers, replayed under the "
        f"current policy, {current.quoted} (version {current.policy.version}), and under the candidate, "
        f"{candidate.quoted} (version {candidate.policy.version}).",
        "",
        "## Who moves",
        "",
        f"{movers} customers ({_share(movers, customers)}) end on another step: {up} higher, {movers - up} lower. "
        f"{differing} differ in some dimension (`moves.jsonl`: {len(moves)} changes).",
    ]
    if flows:
        lines += ["", "| step now | with the candidate | customers |", "|---|---|---:|"]
        lines += [f"| {a} | {b} | {n} |" for n, a, b in flows[:TOP]]
        if len(flows) > TOP:
            lines += ["", f"(and {len(flows) - TOP} smaller flows: `matrix.json`, `whatif.png`)"]
    lines += [
        "",
        "## What it costs",
        "",
        *_cost_lines(perks),
        "",
        "## At the switch",
        "",
        *_switch_lines(comparison, perks),
    ]
    lines += ["", "## Biggest changes", ""]
    lines += _change_lines(moves) or ["None: every customer ends the same under both policies."]
    return "\n".join(lines) + "\n"


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "0%"


def _signed(value: int | str) -> str:
    number = Decimal(value)
    return f"+{number}" if number > 0 else str(number)


def _cost_lines(perks: dict[str, Any]) -> list[str]:
    """The perk table (the perk types whose counts or cost differ) and the totals."""
    total, currency = perks["total"], perks["currency"]
    changed = {perk: e for perk, e in perks["perks"].items() if any(map(Decimal, e["difference"].values()))}
    lines = [
        f"Perks granted: {total['current']['granted']} now, {total['candidate']['granted']} with the candidate "
        f"({_signed(total['difference']['granted'])}); held back: {total['current']['held_back']} now, "
        f"{total['candidate']['held_back']} with the candidate ({_signed(total['difference']['held_back'])})."
    ]
    if "cost" in total["difference"]:
        lines[0] += (
            f" Cost: {total['current']['cost']} {currency} now, {total['candidate']['cost']} {currency} with the "
            f"candidate ({_signed(total['difference']['cost'])} {currency}; perk types without a price not counted)."
        )
    else:
        lines[0] += " No cost: neither policy gives `perk_costs`."
    if changed:
        lines += ["", "| perk | granted now | with the candidate | difference | held back now | with the candidate "
                      "| cost difference |", "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        ranked = sorted(changed.items(), key=lambda item: -abs(item[1]["difference"]["granted"]))
        for perk, e in ranked:
            cost = f"{_signed(e['difference']['cost'])} {currency}" if "cost" in e["difference"] else "—"
            lines.append(f"| {perk} | {e['current']['granted']} | {e['candidate']['granted']} | "
                         f"{_signed(e['difference']['granted'])} | {e['current']['held_back']} | "
                         f"{e['candidate']['held_back']} | {cost} |")  # fmt: skip
    return lines


def _switch_lines(comparison: Comparison, perks: dict[str, Any]) -> list[str]:
    """What rolling the candidate out to the workers now decides (switch.jsonl)."""
    switch = comparison.switch
    steps = Counter((d.from_step, d.to_step) for d in switch if d.type == "customer.step_changed")
    customers = len({d.customer_id for d in switch})
    total, currency = perks["total"]["at_switch"], perks["currency"]
    said = (f"Restarting the workers with the candidate re-evaluates every customer at once (`switch.jsonl`, as "
            f"they publish it): {customers} customers change, {sum(steps.values())} of them step; "
            f"{total['granted']} perks granted")  # fmt: skip
    said += f", costing {total['cost']} {currency}." if "cost" in total else "."
    lines = [said]
    if steps:
        lines += ["", "| step now | at the switch | customers |", "|---|---|---:|"]
        lines += [f"| {a} | {b} | {n} |" for (a, b), n in sorted(steps.items(), key=lambda f: (-f[1], f[0]))[:TOP]]
    granted = sorted(((e["at_switch"]["granted"], perk) for perk, e in perks["perks"].items() if "at_switch" in e),
                     key=lambda g: (-g[0], g[1]))  # fmt: skip
    if granted:
        lines += ["", "Perks at the switch: " + ", ".join(f"{perk} {n}" for n, perk in granted) + "."]
    return lines


def _change_lines(moves: list[dict[str, Any]]) -> list[str]:
    """Per dimension that changes (most customers first): how many customers, and its biggest flows."""
    flows: dict[str, Counter[tuple[str, str]]] = {}
    for move in moves:
        flows.setdefault(move["dimension"], Counter())[(_word(move["from"]), _word(move["to"]))] += 1
    order = sorted(flows, key=lambda d: (-flows[d].total(), DIMENSIONS.index(d)))
    lines = []
    for dimension in order:
        biggest = sorted(flows[dimension].items(), key=lambda f: (-f[1], f[0]))[:3]
        said = ", ".join(f"{a} → {b} {n}" for (a, b), n in biggest)
        lines.append(f"- {dimension}: {flows[dimension].total()} customers ({said})")
    return lines


def _word(value: Any) -> str:
    return "absent" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def _perk_footer(perks: dict[str, Any]) -> str:
    """The perks and their cost in one line, under the picture."""
    total, currency = perks["total"], perks["currency"]
    said = (f"Perks granted: {total['current']['granted']} now, {total['candidate']['granted']} with the candidate "
            f"({_signed(total['difference']['granted'])})")  # fmt: skip
    if "cost" in total["difference"]:
        said += (f"; cost {total['current']['cost']} → {total['candidate']['cost']} {currency} "
                 f"({_signed(total['difference']['cost'])})")  # fmt: skip
    return said


def draw_migration(matrix: dict[str, dict[str, int]], path: Path, comparison: Comparison, footer: str) -> None:
    """The step migration matrix as a heatmap PNG, deterministic as the funnel is (engine/offline/funnel.py): cells
    above the diagonal (a higher step with the candidate) in green, below it in red, as deep as the flow is large
    against the largest; the customers who stay on their step in grey on the diagonal; `footer` under it all."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    size = len(STEPS)
    counts = [[matrix[a][b] for b in STEPS] for a in STEPS]
    largest = max((counts[i][j] for i in range(size) for j in range(size) if i != j), default=0) or 1
    colours = []
    for i in range(size):
        row = []
        for j in range(size):
            n, depth = counts[i][j], (counts[i][j] / largest) ** 0.5
            if i == j:
                row.append((0.88, 0.88, 0.88) if n else (0.96, 0.96, 0.96))
            elif not n:
                row.append((1.0, 1.0, 1.0))
            else:
                colour = plt.cm.Greens if j > i else plt.cm.Reds
                row.append(colour(0.25 + 0.7 * depth)[:3])
        colours.append(row)
    figure, axes = plt.subplots(figsize=(8, 6.5), dpi=100)
    axes.imshow(colours, aspect="equal")
    for i in range(size):
        for j in range(size):
            n = counts[i][j]
            if n:
                dark = i != j and (n / largest) ** 0.5 > 0.5
                axes.text(j, i, str(n), ha="center", va="center", fontsize=12 if i != j else 10,
                          color="white" if dark else "black")  # fmt: skip
    axes.set_xticks(range(size), STEPS, rotation=30, ha="right")
    axes.set_yticks(range(size), STEPS)
    axes.set_xticks([x - 0.5 for x in range(1, size)], minor=True)
    axes.set_yticks([y - 0.5 for y in range(1, size)], minor=True)
    axes.grid(which="minor", color="white", linewidth=2)
    axes.tick_params(which="minor", length=0)
    axes.set_xlabel(f"step with the candidate ({comparison.candidate.name})")
    axes.set_ylabel(f"step now ({comparison.current.name})")
    customers = sum(map(sum, counts))
    movers = customers - sum(counts[i][i] for i in range(size))
    up = sum(counts[i][j] for i in range(size) for j in range(i + 1, size))
    axes.set_title(
        f"What if {comparison.candidate.name} replaced {comparison.current.name}?\n"
        f"{movers} of {customers} customers change step: {up} higher (green), {movers - up} lower (red)"
    )
    figure.text(0.5, 0.015, footer, ha="center", va="bottom", fontsize=10)
    figure.tight_layout(rect=(0, 0.04, 1, 1))
    figure.savefig(path, format="png", metadata={"Software": None})
    plt.close(figure)
