"""`hartonomous broker status` and `hartonomous deadletters list / show / replay / purge`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Annotated, Any

import psycopg
import typer
from psycopg.types.json import set_json_loads

from hartonomous.cli.context import CliContext, cli_context
from hartonomous.cli.errors import CommandUsageError
from hartonomous.db.connection import libpq_url
from hartonomous.errors import NotFoundError
from hartonomous.json_types import exact_dumps, exact_loads

broker_app = typer.Typer(help="Broker health.", no_args_is_help=True)
deadletters_app = typer.Typer(help="Dead letters: list, show, replay, purge.", no_args_is_help=True)

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class BrokerCommandError(NotFoundError):
    """A dead letter that does not exist: the message says which."""


def parse_duration(text: str) -> timedelta:
    match = _DURATION.match(text.strip())
    if match is None:
        raise CommandUsageError(
            f"{text!r} is not a duration: use a number and a unit, e.g. 30m, 12h, 7d, 2w"
        )
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


@contextmanager
def _session(state: CliContext) -> Iterator[tuple[psycopg.Connection[Any], Any]]:
    from hartonomous.db import open_database
    from hartonomous.messaging.broker import Broker

    settings = state.settings()
    with open_database(settings) as database:
        url = libpq_url(database.url)
        with psycopg.connect(url, autocommit=True) as connection:
            yield connection, Broker(settings.message_broker)


@broker_app.command("status")
def status(ctx: typer.Context) -> None:
    """Depth, oldest age, in-flight, orphaned claims, throughput, dead letters, long
    conversations, and the change capture feeding the queue (slot lag)."""
    from hartonomous.cdc.replication import cdc_status
    from hartonomous.messaging.status import broker_status

    state = cli_context(ctx)
    with _session(state) as (connection, broker):
        data = broker_status(connection, broker)
        capture = cdc_status(connection, state.settings().cdc)
    data["change_capture"] = capture.as_dict()
    minute = data["throughput_last_minute"]
    lines = [
        f"queue {data['queue']}: depth {data['depth']}, oldest {data['oldest_age_seconds']}s, "
        f"in flight {data['in_flight']}, delayed {data['delayed']}",
        f"orphaned claims: {data['orphaned_claims']}"
        + "".join(
            f"; pid {o['pid']} ({o['state']}): {o['messages']} message(s), claimed "
            f"{o['claimed_seconds']}s ago, retaken by the next receive"
            for o in data["orphaned_by"]
        ),
        f"change capture: {capture.describe_lag()}",
        f"last minute: {minute['completed']} completed "
        f"({minute['completed_per_second']}/s), {minute['dead_lettered']} dead-lettered",
        f"dead letters: {data['dead_letters']} pending, {data['dead_letters_last_hour']} in "
        f"the last hour" + (" (SPIKE)" if data["dead_letter_spike"] else ""),
        f"conversations past their lifetime ({data['conversation_lifetime_seconds']}s): "
        f"{len(data['long_running_conversations'])}",
    ]
    lines += [
        f"  {c['conversation_id']}: {c['messages']} messages, {c['age_seconds']}s"
        for c in data["long_running_conversations"]
    ]
    state.emit(data, "\n".join(lines))


@deadletters_app.command("list")
def list_command(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(help="How many (newest first)", min=1)] = 50,
    include_replayed: Annotated[
        bool, typer.Option("--include-replayed", help="Also those already replayed")
    ] = False,
) -> None:
    """Dead letters, newest first."""
    from hartonomous.messaging.dead_letters import list_dead_letters

    state = cli_context(ctx)
    with _session(state) as (connection, _broker):
        rows = list_dead_letters(connection, limit, include_replayed)
    lines = [
        f"{r['dead_letter_id']}\t{r['created_at']:%Y-%m-%d %H:%M:%S}\tattempts={r['attempts']}"
        f"\t{r['event_type'] or r['message_type']}\t{r['reason']}"
        + ("\t(replayed)" if r["replayed_at"] else "")
        for r in rows
    ]
    state.emit(rows, "\n".join(lines) or "no dead letters")


@deadletters_app.command("show")
def show_command(ctx: typer.Context, dead_letter_id: int) -> None:
    """Everything about one dead letter: reason, exception, traceback, original body."""
    from hartonomous.messaging.dead_letters import DeadLetterNotFoundError, show_dead_letter

    state = cli_context(ctx)
    with _session(state) as (connection, _broker):
        set_json_loads(exact_loads, connection)  # the body's numbers as they were captured
        try:
            row = show_dead_letter(connection, dead_letter_id)
        except DeadLetterNotFoundError as missing:
            raise BrokerCommandError(str(missing)) from None
    human = "\n".join(
        f"{key}: {exact_dumps(value, indent=2) if key in ('body', 'metadata') else value}"
        for key, value in row.items()
    )
    state.emit(row, human)


@deadletters_app.command("replay")
def replay_command(
    ctx: typer.Context,
    dead_letter_id: Annotated[int | None, typer.Argument(help="One dead letter")] = None,
    replay_all: Annotated[bool, typer.Option("--all", help="Every pending dead letter")] = False,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Pending dead letters with this reason")
    ] = None,
) -> None:
    """Re-enqueue dead letters with attempts reset (each is marked as replayed)."""
    from hartonomous.messaging.dead_letters import (
        DeadLetterNotFoundError,
        ReplaySelection,
        replay,
    )

    chosen = sum(x is not None and x is not False for x in (dead_letter_id, reason, replay_all))
    if chosen != 1:
        raise CommandUsageError("say which dead letters to replay: an ID, --all or --reason")
    state = cli_context(ctx)
    selection = ReplaySelection(dead_letter_id, reason, replay_all)
    with _session(state) as (connection, broker):
        try:
            ids = replay(connection, broker, selection)
        except DeadLetterNotFoundError as missing:
            raise BrokerCommandError(str(missing)) from None
    state.emit({"replayed": len(ids), "message_ids": ids}, f"replayed {len(ids)} dead letter(s)")


@deadletters_app.command("purge")
def purge_command(
    ctx: typer.Context,
    older_than: Annotated[
        str, typer.Option("--older-than", help="Age, e.g. 30m, 12h, 7d (0s: all)")
    ],
    yes: Annotated[bool, typer.Option("--yes", help="Confirm the deletion")] = False,
) -> None:
    """Delete dead letters older than a given age."""
    from hartonomous.messaging.dead_letters import purge

    age = parse_duration(older_than)
    if not yes:
        raise CommandUsageError("purge deletes dead letters for good: add --yes to confirm")
    state = cli_context(ctx)
    with _session(state) as (connection, _broker):
        removed = purge(connection, age)
    state.emit({"purged": removed}, f"purged {removed} dead letter(s) older than {older_than}")
