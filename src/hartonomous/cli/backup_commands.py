"""`hartonomous backup full / incremental / list / verify` and `hartonomous restore`
(docs/operations.md, "Backups" and "Restore")."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from hartonomous.cli.context import cli_context
from hartonomous.cli.errors import CommandUsageError
from hartonomous.errors import OperationFailedError
from hartonomous.services import open_platform

backup_app = typer.Typer(
    help="Backups (pg_basebackup) and their verification.", no_args_is_help=True
)

KeepOption = Annotated[
    int | None,
    typer.Option(
        "--keep", min=1, help="Then keep only the N newest full backups (and their incrementals)"
    ),
]
BackupDirOption = Annotated[
    Path | None,
    typer.Option(
        "--backup-dir", file_okay=False, help="Backup directory (default: \\[backup] directory)"
    ),
]


def _take(ctx: typer.Context, kind: str, keep: int | None) -> None:
    from hartonomous.services.backup import backup_take

    state = cli_context(ctx)
    with open_platform(state.settings()) as platform:
        taken = backup_take(platform, "full" if kind == "full" else "incremental", keep)
    backup = taken.backup
    lines = [
        f"{backup.kind} backup {backup.backup_id} taken ({backup.size_bytes} bytes, "
        f"WAL {backup.start_lsn}..{backup.end_lsn}"
        + (f", incremental to {backup.parent}" if backup.parent else "")
        + ")"
    ]
    if taken.retention is not None and taken.retention.skipped is not None:
        # Said where the operator looks, even under --json: nothing was removed.
        sys.stderr.write(f"warning: retention skipped: {taken.retention.skipped}\n")
        lines.append("retention: skipped (see the warning); the next --keep run applies it")
    elif taken.retention is not None:
        lines.append(
            f"retention: kept {len(taken.retention.kept)}, removed "
            f"{len(taken.retention.removed)}"
            + "".join(f"\n  removed {name}" for name in taken.retention.removed)
        )
    state.emit(taken.model_dump(mode="json"), "\n".join(lines))


@backup_app.command("full")
def backup_full(ctx: typer.Context, keep: KeepOption = None) -> None:
    """Take a full base backup of the database (pg_basebackup)."""
    _take(ctx, "full", keep)


@backup_app.command("incremental")
def backup_incremental(ctx: typer.Context, keep: KeepOption = None) -> None:
    """Take an incremental backup on the newest backup (pg_basebackup --incremental)."""
    _take(ctx, "incremental", keep)


@backup_app.command("list")
def backup_list(ctx: typer.Context, backup_dir: BackupDirOption = None) -> None:
    """The backups in the backup directory, oldest first."""
    from hartonomous.services.backup import backup_list as listing

    state = cli_context(ctx)
    report = listing(state.settings(), backup_dir)
    lines = [
        f"{report.directory}: {len(report.backups)} backup(s), "
        f"{report.archived_wal_segments} archived WAL segment(s)"
    ]
    rows: list[tuple[str, ...]] = [
        (
            b.backup_id,
            b.kind,
            f"finished {b.finished_at.isoformat()}",
            f"{b.size_bytes} bytes",
            f"on {b.parent}" if b.parent else "",
        )
        for b in report.backups
    ] + [
        (name, "INCOMPLETE", "(interrupted; removed by --keep)", "", "")
        for name in report.incomplete
    ]
    lines += _columns(rows, right_aligned={3})
    state.emit(report.model_dump(mode="json"), "\n".join(lines))


def _columns(rows: list[tuple[str, ...]], right_aligned: set[int]) -> list[str]:
    """``rows`` as lines of fixed-width columns (each as wide as its widest cell, two spaces
    apart, indented by two); columns in ``right_aligned`` flush right (numbers)."""
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  "
        + "  ".join(
            cell.rjust(width) if i in right_aligned else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


@backup_app.command("verify")
def backup_verify(
    ctx: typer.Context,
    backup_id: Annotated[str | None, typer.Argument(help="One backup (default: every one)")] = None,
    restore_test: Annotated[
        bool,
        typer.Option(
            "--restore-test", help="Also restore it into a scratch directory and start it"
        ),
    ] = False,
    backup_dir: BackupDirOption = None,
) -> None:
    """Check backups with pg_verifybackup (checksums, missing or extra files, WAL)."""
    from hartonomous.services.backup import backup_verify as verify

    state = cli_context(ctx)
    report = verify(state.settings(), backup_id, restore_test=restore_test, directory=backup_dir)
    lines = [
        f"{b.backup_id}: " + ("OK" if b.ok else f"FAIL {b.error}") + f"\n  {b.wal.describe()}"
        for b in report.backups
    ]
    if report.restore_test is not None:
        lines.append(
            f"restore test: {' + '.join(report.restore_test)} restored and started; rows "
            + ", ".join(f"{t} {n}" for t, n in (report.restore_test_tables or {}).items())
        )
    state.emit({**report.model_dump(mode="json"), "ok": report.ok}, "\n".join(lines))
    if not report.ok:
        raise BackupVerifyFailedError(
            f"{sum(not b.ok for b in report.backups)} backup(s) failed verification"
        )


class BackupVerifyFailedError(OperationFailedError):
    """At least one backup failed `backup verify` (each is named in the output)."""

    code = "backup-verification-failed"


def restore(  # noqa: PLR0917 - typer passes parameters by keyword
    ctx: typer.Context,
    backup_id: Annotated[str, typer.Argument(metavar="BACKUP", help="Backup id, or `latest`")],
    data_dir: Annotated[
        Path,
        typer.Option(
            "--data-dir", file_okay=False, help="New data directory (must not exist or be empty)"
        ),
    ],
    to_time: Annotated[
        str | None,
        typer.Option("--to-time", help="Replay archived WAL to this ISO 8601 time (with offset)"),
    ] = None,
    backup_dir: BackupDirOption = None,
    accept_wal_gap: Annotated[
        bool,
        typer.Option(
            "--accept-wal-gap",
            help="Without --to-time: restore to the end of the continuous archived WAL even "
            "when a gap or a damaged segment cuts it (refused otherwise)",
        ),
    ] = False,
) -> None:
    """Restore a backup into a new data directory, to a point in time, and re-arm capture."""
    from hartonomous.services.backup import restore_backup

    state = cli_context(ctx)
    moment = _parse_time(to_time)
    result = restore_backup(
        state.settings(),
        backup_id,
        data_dir.absolute(),
        moment,
        directory=backup_dir,
        accept_wal_gap=accept_wal_gap,
    )
    gaps = result.catch_up
    if moment is not None:
        reached = f" to {moment.isoformat()}"
    elif result.wal.error is None:
        reached = " to the end of the archived WAL"
    else:
        reached = f" to the end of the continuous archived WAL ({result.wal.continuous_to})"
        # A restore that stopped short says so where the operator looks, even under --json.
        sys.stderr.write(
            f"warning: archived WAL after {result.wal.continuous_to} was not replayed: "
            f"{result.wal.error}; restored to {result.wal.describe_newest()}\n"
        )
    for reason in result.skipped:
        # Said where the operator looks, even under --json: `latest` is not the newest backup.
        sys.stderr.write(
            f"warning: skipped the newer backup {reason}: not restorable; restored "
            f"{result.chain[-1]} instead\n"
        )
    paused = (
        f"\nsync is paused in the restored directory (the source's `sync pause` at the "
        f"restore point): resume it with: hartonomous --data-dir {result.data_dir} sync resume"
        if result.sync_paused
        else ""
    )
    state.emit(
        result.model_dump(mode="json"),
        f"restored {' + '.join(result.chain)} into {result.data_dir}"
        + reached
        + f"; change capture re-armed at {result.slot_lsn}, {result.messages_returned} "
        f"claimed message(s) returned to the queue; catch-up re-emitted "
        f"{gaps.get('events_emitted', 0)} event(s) and wrote {gaps.get('nodes_written', 0)} "
        f"node(s), {gaps.get('edges_written', 0)} edge(s)\n"
        f"start it with: hartonomous --data-dir {result.data_dir} up" + paused,
    )


def _parse_time(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise CommandUsageError(
            f"--to-time {text!r} is not an ISO 8601 time (e.g. 2026-01-31T12:00:00+00:00)"
        ) from None
    if moment.tzinfo is None:
        raise CommandUsageError(f"--to-time {text!r} needs a UTC offset (e.g. +00:00)")
    return moment
