"""Taking a backup: `pg_basebackup` (full, or `--incremental` to the newest backup).

The WAL the backup needs to be consistent is streamed into it (`-X stream`), so each backup
restores on its own; the WAL between backups comes from the archive (`wal/`).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

from hartonomous.backup.catalog import (
    BackupInfo,
    BackupKind,
    backup_path,
    chain_of,
    chain_problem,
    list_backups,
    manifest_facts,
    new_backup_id,
    remove_backup,
    write_info,
)
from hartonomous.backup.tools import BackupToolError, run_program
from hartonomous.backup.verify import BackupVerificationError, verify_backup
from hartonomous.db.embedded import make_server_dir
from hartonomous.errors import ConflictError, OperationFailedError

Connection = psycopg.Connection[Any]


class NoFullBackupError(ConflictError):
    """An incremental backup was asked for with no earlier backup of this server."""

    code = "no-full-backup"


class WalSummariesOffError(ConflictError):
    """The server does not summarise WAL, so it cannot take incremental backups."""

    code = "summarize-wal-off"


class TimelineChangedError(ConflictError):
    """The newest backup of this server was taken on another timeline (the server was
    restored or promoted since): an incremental backup cannot build on it."""

    code = "backup-timeline-changed"


class BrokenChainError(ConflictError):
    """The newest backup's chain does not verify (a backup of it is gone or fails
    pg_verifybackup): an incremental backup on it could never be restored."""

    code = "backup-chain-broken"


class BackupFailedError(OperationFailedError):
    """pg_basebackup failed; nothing of the attempt is left in the backup directory."""

    code = "backup-failed"


def replication_target(url: str) -> tuple[str, str | None]:
    """(libpq connection string without password, password) for the server behind ``url``."""
    parsed = make_url(url).set(drivername="postgresql")
    password = parsed.password
    return parsed.set(password=None).render_as_string(hide_password=False), (
        None if password is None else str(password)
    )


def _require_sound_chain(directory: Path, backups: list[BackupInfo], parent: BackupInfo) -> None:
    """Refuse to build on ``parent`` unless its whole chain is present and verifies."""
    problem = chain_problem(backups, parent)
    if problem is None:
        for backup in chain_of(backups, parent):
            try:
                verify_backup(directory, backup)
            except BackupVerificationError as exc:
                problem = str(exc)
                break
    if problem is not None:
        raise BrokenChainError(
            f"cannot take an incremental backup on {parent.backup_id}, the newest backup: "
            f"its chain does not verify ({problem}); run `hartonomous backup full`"
        )


def take_backup(connection: Connection, url: str, directory: Path, kind: BackupKind) -> BackupInfo:
    """Take a full or incremental backup of the server ``connection`` is on into
    ``directory``/base/<id>; returns what `backup list` shows for it.

    Raises ``NoFullBackupError`` (incremental, nothing to base it on), ``TimelineChangedError``
    (incremental, the newest backup is of another timeline), ``WalSummariesOffError``
    (incremental, `summarize_wal` off), ``BrokenChainError`` (incremental, the newest
    backup's chain has a backup gone or failing pg_verifybackup), ``BackupFailedError``
    (pg_basebackup's own line: e.g. permission denied, no space left on device); a failed
    attempt leaves nothing behind.
    """
    facts = connection.execute(
        "SELECT now(), (SELECT system_identifier::text FROM pg_control_system()), "
        "current_setting('server_version'), current_setting('summarize_wal'), "
        # The timeline WAL is written on now (the checkpoint's lags a promotion).
        "('x' || left(pg_walfile_name(pg_current_wal_lsn()), 8))::bit(32)::int"
    ).fetchone()
    assert facts is not None
    started_at, system_identifier, version, summarize, timeline = facts
    parent: BackupInfo | None = None
    if kind == "incremental":
        if summarize != "on":
            raise WalSummariesOffError(
                "incremental backups need summarize_wal = on on the server "
                '(docs/operations.md, "Backups"); take a full backup or turn it on'
            )
        same_server = [
            b for b in list_backups(directory) if b.system_identifier == system_identifier
        ]
        if not same_server:
            raise NoFullBackupError(
                f"no backup of this server in {directory} to base an incremental backup on: "
                "run `hartonomous backup full` first"
            )
        parent = same_server[-1]
        if parent.timeline != timeline:
            # A restored cluster keeps its source's system identifier but starts a new
            # timeline, without the WAL summaries of the old one: pg_basebackup would fail
            # with PostgreSQL's own words about summaries and timelines.
            raise TimelineChangedError(
                f"backup {parent.backup_id} was taken on timeline {parent.timeline}, this "
                f"server is on timeline {timeline} (restored or promoted since): an "
                "incremental backup cannot build on it; take a full backup "
                "(`hartonomous backup full`)"
            )
        _require_sound_chain(directory, same_server, parent)
    make_server_dir(directory)
    backup_id = new_backup_id(directory, kind, started_at)
    path = backup_path(directory, backup_id)
    conninfo, password = replication_target(url)
    args = ["-d", conninfo, "-D", str(path), "-X", "stream", "-c", "fast", "--no-password"]
    if parent is not None:
        args.append(f"--incremental={backup_path(directory, parent.backup_id) / 'backup_manifest'}")
    try:
        run_program("pg_basebackup", *args, password=password)
    except BackupToolError as exc:
        shutil.rmtree(path, ignore_errors=True)
        raise BackupFailedError(f"{kind} backup failed: {exc}") from None
    finished = connection.execute("SELECT now()").fetchone()
    assert finished is not None
    start_lsn, end_lsn, timeline, manifest_system = manifest_facts(path)
    info = BackupInfo(
        backup_id=backup_id,
        kind=kind,
        parent=None if parent is None else parent.backup_id,
        full=backup_id if parent is None else parent.full,
        started_at=started_at,
        finished_at=finished[0],
        start_lsn=start_lsn,
        end_lsn=end_lsn,
        timeline=timeline,
        system_identifier=manifest_system or str(system_identifier),
        server_version=str(version),
        size_bytes=sum(f.stat().st_size for f in path.rglob("*") if f.is_file()),
    )
    try:
        write_info(path, info)
    except OSError as exc:
        remove_backup(directory, backup_id)
        raise BackupFailedError(f"{kind} backup failed: {exc.strerror}: {path}") from None
    return info
