"""`escalera bootstrap FILE…`: seed the live workers' tables from an order history, with a cutover (issue 17).

The history is folded offline with the replay's core (`engine.offline.history`), then written where a worker
restores from (`engine.broker.seed`): every customer's state into the table's changelog (with each partition's perk
budget ledger, for a policy with budgets), and the population of every midnight passed into the partition-stats
topic. Workers started afterwards, on empty data directories, restore the states as after any restart and go on
with the live events. Decisions dated before `--publish-from` (by default: all of them) go only to files, for
marketing to audit; the later ones are published too, with the ids a streaming worker would have given them.

Nothing is written when a check fails (exit 2): workers of the group are running, the table already holds states
(unless `--replace`), the history is out of time order beyond the arrival grace, or the policy is not the one the
workers will run.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import typer
from rich.progress import BarColumn, DownloadColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

from engine.broker.check import check_broker
from engine.broker.seed import BootstrapRefused, SeedWriter, delete_seeded, live_members, occupied, seeded_topics
from engine.broker.topics import ensure_topics
from engine.cli.offline import file_errors, parse_timestamp, progress_bar
from engine.loyalty import Published, load_policy
from engine.offline.history import Cutover, Folded, fold
from engine.offline.outputs import DecisionFiles, write_outputs
from engine.settings import Settings
from engine.stream.population import population_record
from schemas.construct import flat_json
from schemas.events import outbound_streams


def bootstrap(
    ctx: typer.Context,
    files: list[Path] = typer.Argument(
        ..., metavar="FILE", help="JSON-lines event files of the history, oldest first."
    ),
    publish_from: str | None = typer.Option(
        None,
        metavar="TIME",
        help="Publish the decisions dated at or after this moment (RFC 3339) to the perk and transition topics "
        "(default: none; every historic decision goes to the files only).",
    ),
    policy: Path | None = typer.Option(
        None, exists=True, dir_okay=False, help="Policy file (default: ESCALERA_POLICY_FILE, as the workers)."
    ),
    out: Path = typer.Option(Path("escalera-bootstrap"), file_okay=False, help="Where the audit files go."),
    replace: bool = typer.Option(False, help="Delete what the table's topics hold first (says what)."),
) -> None:
    """Seed the workers' tables from an order history: each customer's state where a worker restores it from.

    Stop every worker of the group first (ESCALERA_APP_ID); start them afterwards on empty data directories.
    """
    settings: Settings = ctx.obj
    workers_policy = load_policy(settings.policy_file)
    effective = load_policy(policy) if policy is not None else workers_policy
    if effective.version != workers_policy.version:
        raise BootstrapRefused(
            f"the policy {policy} (version {effective.version}) is not the one the workers will run "
            f"(ESCALERA_POLICY_FILE={settings.policy_file or '<built-in defaults>'}, "
            f"version {workers_policy.version}): "
            "seed with the workers' policy, or point ESCALERA_POLICY_FILE at the same file for both"
        )
    for path in files:
        with file_errors("read", path):
            if path.is_dir():
                raise IsADirectoryError(21, "Is a directory", str(path))
            path.open("rb").close()
    moment = None if publish_from is None else parse_timestamp(publish_from)
    check_broker(settings, on_wait=lambda line: typer.echo(line, err=True))
    ensure_topics(settings)
    members = live_members(settings)
    if members:
        raise BootstrapRefused(
            f"the worker group {settings.app_id!r} has {members} live member(s): stop every `escalera worker` of "
            "ESCALERA_APP_ID first (a crashed one leaves the group after ESCALERA_SESSION_TIMEOUT_SECONDS)"
        )
    held = occupied(settings)
    if not held.empty and not replace:
        what = ", ".join(f"{topic} ({count} records)" for topic, count in held.records.items() if count)
        raise BootstrapRefused(
            f"the table's topics are not empty: {what}; a worker or an earlier bootstrap wrote them. "
            "--replace deletes them first"
        )
    with file_errors("write --out", out):
        out.mkdir(parents=True, exist_ok=True)

    began = time.monotonic()
    # Decisions from the cutover on are published after the fold (nothing is written before every check passed):
    # kept in a file meanwhile, not in memory (a cutover years back may hold millions).
    published_file = (out / "published.jsonl").open("wb")

    def publish_later(decision: Published) -> None:
        published_file.write(flat_json(decision) + b"\n")

    total = sum(path.stat().st_size for path in files)
    with DecisionFiles(out) as audit, published_file:
        cutover = Cutover(moment, audit.decision, publish_later)
        columns = (TextColumn("folding the history"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
        try:
            with progress_bar(*columns) as bar:
                task = bar.add_task("fold", total=total)
                folded = fold(
                    files, effective, settings.decode_limits(effective.currencies), datetime.now(UTC),
                    timedelta(seconds=settings.arrival_grace_seconds), cutover, audit.rejected,
                    lambda n: bar.advance(task, n), settings.topic_partitions,
                )  # fmt: skip
        except KeyboardInterrupt:
            typer.echo("\nbootstrap interrupted while folding the history: nothing was written to Kafka", err=True)
            raise typer.Exit(130) from None
    replay = folded.replay
    folded_in = time.monotonic() - began

    # Nothing was written to Kafka so far: the checks and the fold are done, the writes begin.
    if replace and not held.empty:
        what = ", ".join(f"{topic} ({count} records)" for topic, count in held.records.items() if count)
        typer.echo(f"--replace: deleting {what}", err=True)
        delete_seeded(settings)
        ensure_topics(settings)
    writing = time.monotonic()
    writer = SeedWriter(settings)
    try:
        _write(settings, writer, folded, out)
    except KeyboardInterrupt:
        typer.echo(
            "\nbootstrap interrupted while writing: the table's topics hold part of the seed; run it again with "
            "--replace before starting any worker",
            err=True,
        )
        raise typer.Exit(130) from None
    finally:
        writer.close()
    written_in = time.monotonic() - writing
    report = write_outputs(replay, out, effective, replay.clock or datetime.now(UTC))
    (out / "bootstrap.json").write_bytes(
        orjson.dumps(
            {
                "files": [str(path) for path in files],
                "lines": replay.counts.lines,
                "events": replay.counts.events,
                "customers": len(replay.states),
                "history_ends": None if replay.clock is None else replay.clock.isoformat(),
                "publish_from": None if moment is None else moment.isoformat(),
                "decisions_published": cutover.published,
                "decisions_held": cutover.held,
                "policy_version": effective.version,
                "topics": seeded_topics(settings),
            },
            option=orjson.OPT_INDENT_2,
        )
        + b"\n"
    )
    seconds = time.monotonic() - began
    typer.echo(
        f"seeded {len(replay.states)} customers from {replay.counts.events} events "
        f"({sum(report['rejections'].values())} lines rejected) in {seconds:.1f} s "
        f"(fold {folded_in:.1f} s, {replay.counts.lines / max(folded_in, 1e-9):,.0f} lines/s; "
        f"writes {written_in:.1f} s); {cutover.held} historic decisions in {out}/perks.jsonl and "
        f"transitions.jsonl, {cutover.published} published from the cutover; start the workers now"
    )


def _write(settings: Settings, writer: SeedWriter, folded: Folded, out: Path) -> None:
    """The states, each partition's perk budget ledger (a policy with budgets: the grants the fold counted, as the
    partition's worker would have counted them), every midnight's population, then the decisions from the cutover on
    (from published.jsonl)."""
    replay = folded.replay
    with progress_bar(TextColumn("writing the states"), BarColumn(), MofNCompleteColumn()) as bar:
        task = bar.add_task("states", total=len(replay.states))
        for customer_id, state in replay.states.items():
            writer.state(customer_id, state.encode())
            bar.advance(task)
    if replay.policy.budgeted:
        for partition, ledger in sorted(replay.ledgers.by_partition.items()):
            writer.ledger(partition, ledger.to_json())
    writer.stats(population_record(day, population) for day, population in folded.midnight_populations())
    with (out / "published.jsonl").open("rb") as published:
        for line in published:
            decision = line.rstrip(b"\n")
            head = orjson.loads(decision)
            for stream in outbound_streams(head["type"]):  # an erasure notice goes to both topics
                topic = settings.topic_perks if stream == "perks" else settings.topic_transitions
                writer.decision(topic, head["customer_id"], decision)
