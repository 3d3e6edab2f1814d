"""`hartonomous broker status` and `hartonomous deadletters list / show / replay / purge`."""

from __future__ import annotations

from typing import Annotated

import typer

from hartonomous.cli.context import cli_context
from hartonomous.cli.errors import CommandUsageError
from hartonomous.json_types import exact_dumps
from hartonomous.services import open_platform
from hartonomous.services.dead_letters import parse_duration

broker_app = typer.Typer(help="Broker health.", no_args_is_help=True)
deadletters_app = typer.Typer(help="Dead letters: list, show, replay, purge.", no_args_is_help=True)


@broker_app.command("status")
def status(ctx: typer.Context) -> None:
    """Depth, oldest age, in-flight, orphaned claims, throughput, dead letters, long
    conversations, the change capture feeding the queue (slot lag) and, on the Kafka
    transport, the consumer group's lag."""
    from hartonomous.services.broker import broker_status

    state = cli_context(ctx)
    with open_platform(state.settings(), read_only=True) as platform:
        report = broker_status(platform)
    capture = report.change_capture
    data = report.model_dump()
    minute = data["throughput_last_minute"]
    lines = [
        f"queue {data['queue']}: depth {data['depth']}, oldest {data['oldest_age_seconds']}s, "
        f"in flight {data['in_flight']}, delayed {data['delayed']}",
        *([] if report.kafka is None else [report.kafka.describe()]),
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
    from hartonomous.services.dead_letters import list_dead_letters

    state = cli_context(ctx)
    with open_platform(state.settings(), read_only=True) as platform:
        page = list_dead_letters(platform, limit=limit, include_replayed=include_replayed)
    rows = [item.model_dump() for item in page.items]
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
    from hartonomous.services.dead_letters import show_dead_letter

    state = cli_context(ctx)
    with open_platform(state.settings(), read_only=True) as platform:
        row = show_dead_letter(platform, dead_letter_id).model_dump()
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
    from hartonomous.services.dead_letters import ReplaySelection, replay_dead_letters

    chosen = sum(x is not None and x is not False for x in (dead_letter_id, reason, replay_all))
    if chosen != 1:
        raise CommandUsageError("say which dead letters to replay: an ID, --all or --reason")
    state = cli_context(ctx)
    selection = ReplaySelection(dead_letter_id, reason, replay_all)
    with open_platform(state.settings()) as platform:
        ids = replay_dead_letters(platform, selection).message_ids
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
    from hartonomous.services.dead_letters import purge_dead_letters

    age = parse_duration(older_than)
    if not yes:
        raise CommandUsageError("purge deletes dead letters for good: add --yes to confirm")
    state = cli_context(ctx)
    with open_platform(state.settings()) as platform:
        removed = purge_dead_letters(platform, age, confirm=True).purged
    state.emit({"purged": removed}, f"purged {removed} dead letter(s) older than {older_than}")
