"""`hartonomous sync [--once]`, `sync pause / resume` and `graph status / repair / replay`."""

from __future__ import annotations

import getpass
import json
import signal
import socket
import threading
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from hartonomous.cli.context import cli_context
from hartonomous.cli.errors import CommandUsageError
from hartonomous.services import open_platform

graph_app = typer.Typer(help="SQL graph and Neo4j projection.", no_args_is_help=True)
# `sync` runs the worker; its subcommands pause and resume every sync process.
sync_app = typer.Typer(invoke_without_command=True)


class GraphCommandError(CommandUsageError):
    """A graph command cannot run as asked (bad argument, projection not configured)."""


@sync_app.callback()
def sync(
    ctx: typer.Context,
    once: Annotated[
        bool, typer.Option("--once", help="Drain what is queued now, then exit")
    ] = False,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=10_000, help="Messages per transaction")
    ] = 100,
) -> None:
    """Policy, throttle, SQL graph, usage ledger and Neo4j projection for queued events."""
    from hartonomous.services.background import drain_sync, serve_sync

    if ctx.invoked_subcommand is not None:
        return
    state = cli_context(ctx)
    with open_platform(state.settings()) as platform:
        if once:
            drained = drain_sync(platform, batch_size)
            outcome, projection = drained.outcome, drained.neo4j_projection
            data = {**outcome.describe(), "neo4j_projection": projection}
            state.emit(
                data,
                f"completed {outcome.completed} event(s), billed {outcome.billed}, "
                f"delayed {outcome.delayed}, dead-lettered {outcome.dead_lettered}, "
                f"waiting for Neo4j {outcome.waiting_for_neo4j} (projection {projection})",
            )
            return
        stop = threading.Event()

        def request_stop(_signum: int, _frame: FrameType | None) -> None:
            stop.set()

        def started(projection: str) -> None:
            state.emit({"running": True, "neo4j_projection": projection}, "sync running")

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, request_stop)
        serve_sync(platform, batch_size, stop, started)


@sync_app.command("pause")
def sync_pause(
    ctx: typer.Context,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why (shown by status and health)")
    ] = None,
) -> None:
    """Pause every sync process (CES consumer and sync worker, in any process) until resumed."""
    from hartonomous.services.sync_control import pause_sync

    state = cli_context(ctx)
    with open_platform(state.settings()) as platform:
        change = pause_sync(platform, by=_operator(), reason=reason)
    data = {**asdict(change.state), "changed": change.changed}
    state.emit(data, change.state.describe() + ("" if change.changed else " (already)"))


@sync_app.command("resume")
def sync_resume(ctx: typer.Context) -> None:
    """Resume every sync process paused by `sync pause`."""
    from hartonomous.services.sync_control import resume_sync

    state = cli_context(ctx)
    with open_platform(state.settings()) as platform:
        change = resume_sync(platform)
    data = {**asdict(change.state), "changed": change.changed}
    state.emit(data, "sync resumed" if change.changed else "sync was not paused")


def _operator() -> str:
    """Who paused: the OS user at this host (shown beside the pause)."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


@graph_app.command("status")
def graph_status(ctx: typer.Context) -> None:
    """Graph sizes, projection lag (when Neo4j projection is on), pending events, slot lag,
    ledger rows and sync counters."""
    from hartonomous.services.graph import graph_status as read_status

    state = cli_context(ctx)
    with open_platform(state.settings(), read_only=True) as platform:
        report = read_status(platform)
    projecting = report.neo4j_projection == "on"
    capture = report.change_capture
    data = report.model_dump()
    queue = data["queue"]
    lines = [f"neo4j projection {data['neo4j_projection']}"]
    for kind, table in (("nodes", "graph_nodes"), ("edges", "graph_edges")):
        counts = data[table]
        if not projecting:
            # Nothing is projected without Neo4j: "unprojected" would count every row.
            counts.pop("unprojected")
            counts.pop("oldest_unprojected_seconds")
            lines.append(f"{kind} {counts['rows']}")
        else:
            lines.append(
                f"{kind} {counts['rows']} ({counts['unprojected']} unprojected"
                + _oldest(counts["oldest_unprojected_seconds"])
                + ")"
            )
    lines += [
        f"pending events {queue['pending_events']}"
        + (f" (oldest {queue['oldest_event_seconds']}s)" if queue["pending_events"] else ""),
        f"change capture: {capture.describe_lag()}",
        f"ledger rows {data['ledger_rows']}",
        *(f"  {name}: {count}" for name, count in data["counters"].items()),
    ]
    state.emit(data, "\n".join(lines))


def _oldest(seconds: float | None) -> str:
    return "" if seconds is None else f", oldest {seconds}s"


@graph_app.command("repair")
def graph_repair(
    ctx: typer.Context,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=100_000)] = 1000,
) -> None:
    """Rebuild graph_nodes / graph_edges from atoms, holdings, relations, models and jobs."""
    from hartonomous.services.graph import graph_repair as repair

    state = cli_context(ctx)
    with open_platform(state.settings()) as platform:
        report = repair(platform, batch_size)
    data = report.model_dump()
    state.emit(
        data,
        f"repaired from {sum(report.rows.values())} source row(s): {report.nodes} node and "
        f"{report.edges} edge upsert(s); removed {report.removed_nodes} orphan node(s) and "
        f"{report.removed_edges} orphan edge(s); invalid rows {json.dumps(report.invalid)}; "
        f"failed rows {json.dumps(report.failed)}"
        + "".join(f"\n  {error}" for error in report.errors),
    )


@graph_app.command("replay")
def graph_replay(
    ctx: typer.Context,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only rows changed at or after this ISO 8601 time"),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=100_000)] = 1000,
) -> None:
    """Re-project the SQL graph into Neo4j (needs [neo4j] uri); without --since, also delete
    from Neo4j what the SQL graph no longer has."""
    from hartonomous.services.graph import graph_replay as replay
    from hartonomous.services.graph import require_projection

    state = cli_context(ctx)
    require_projection(state.settings())  # said first: no --since makes it work
    start = _parse_since(since)
    with open_platform(state.settings()) as platform:
        report = replay(platform, since=start, batch_size=batch_size)
    state.emit(
        {**report.model_dump(exclude={"since"}), "since": since},
        f"re-projected {report.nodes} node(s) and {report.edges} edge(s) into Neo4j; removed "
        f"{report.removed_nodes} node(s) and {report.removed_edges} edge(s) it no longer has",
    )


@graph_app.command("backup")
def graph_backup(
    ctx: typer.Context,
    to: Annotated[Path, typer.Option("--to", help="Folder for <database>.dump (created)")],
) -> None:
    """Dump the (stopped) Neo4j database with the installation's neo4j-admin."""
    from hartonomous.services.graph import graph_backup as backup

    state = cli_context(ctx)
    dump = backup(state.settings(), to)
    state.emit(
        {"database": dump.database, "path": str(dump.path), "size_bytes": dump.size_bytes},
        f"dumped Neo4j database {dump.database} to {dump.path} ({dump.size_bytes} bytes)",
    )


@graph_app.command("restore")
def graph_restore(
    ctx: typer.Context,
    source: Annotated[Path, typer.Option("--from", help="Folder holding <database>.dump")],
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the existing Neo4j database")
    ] = False,
) -> None:
    """Load a `graph backup` dump into the (stopped) Neo4j database; then start Neo4j and
    run `graph catch-up`."""
    from hartonomous.services.graph import graph_restore as restore

    state = cli_context(ctx)
    dump = restore(state.settings(), source, overwrite=overwrite)
    state.emit(
        {"database": dump.database, "path": str(dump.path), "size_bytes": dump.size_bytes},
        f"loaded {dump.path} into Neo4j database {dump.database}: start Neo4j, then run "
        "`hartonomous graph catch-up` for what changed after the dump",
    )


@graph_app.command("catch-up")
def graph_catch_up(
    ctx: typer.Context,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only source rows changed at or after this ISO 8601 time"),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=100_000)] = 500,
) -> None:
    """Find what the SQL graph, Neo4j (when configured) and the ledger lack relative to the
    source tables and re-emit exactly that; a second run finds nothing."""
    from hartonomous.services.graph import graph_catch_up as catch_up

    state = cli_context(ctx)
    start = _parse_since(since)
    with open_platform(state.settings()) as platform:
        report = catch_up(platform, since=start, batch_size=batch_size)
    neo4j = (
        "neo4j projection off"
        if report.neo4j_nodes_missing is None
        else f"neo4j lacked {report.neo4j_nodes_missing} node(s) and "
        f"{report.neo4j_edges_missing} edge(s): merged"
    )
    state.emit(
        {**report.model_dump(exclude={"since"}), "since": since},
        f"read {sum(report.rows.values())} source row(s); graph lacked "
        f"{sum(report.graph_gaps.values())} row(s) {json.dumps(report.graph_gaps)}: wrote "
        f"{report.nodes_written} node(s) and {report.edges_written} edge(s); ledger lacked "
        f"{sum(report.ledger_gaps.values())} row(s) {json.dumps(report.ledger_gaps)}: "
        f"re-emitted {report.events_emitted} event(s) ({report.events_already_queued} "
        f"already queued); {neo4j}",
    )


def _parse_since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise GraphCommandError(
            f"--since {text!r} is not an ISO 8601 time (e.g. 2026-01-31T12:00:00+00:00)"
        ) from None
    if moment.tzinfo is None:
        raise GraphCommandError(f"--since {text!r} needs a UTC offset (e.g. +00:00)")
    return moment
