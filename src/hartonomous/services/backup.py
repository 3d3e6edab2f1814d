"""Backups, verification and restore (docs/operations.md, "Backups" and "Restore").

The work is `hartonomous.backup`'s; these are the operator's use cases. Taking a backup needs
the running database (`platform`); listing, verifying and restoring read only the backup
directory (`[backup] directory`, or `<data_dir>/backups`) and never touch the live server.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from contextlib import closing
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
from pydantic import BaseModel

from hartonomous.backup.catalog import (
    BackupInfo,
    BackupKind,
    BackupNotFoundError,
    chain_of,
    existing_directory,
    find_backup,
    incomplete_backups,
    list_backups,
)
from hartonomous.backup.lock import BackupDirectoryInUseError, backup_lock, reading_lock
from hartonomous.backup.restore import restore
from hartonomous.backup.retention import prune
from hartonomous.backup.take import take_backup
from hartonomous.backup.verify import BackupVerificationError, verify_backup
from hartonomous.backup.wal_archive import ArchiveCheck, Dumped, check_archive
from hartonomous.backup.wal_receiver import receive_wal
from hartonomous.config import Settings
from hartonomous.db.runtime import Database, backup_directory
from hartonomous.messaging.services import BackgroundService
from hartonomous.messaging.transport import open_transport
from hartonomous.services.platform import Platform
from hartonomous.services.sessions import database_url, dedicated_session
from hartonomous.sync.catch_up import catch_up

__all__ = [
    "BackupListing",
    "BackupTaken",
    "BackupVerification",
    "Restored",
    "backup_list",
    "backup_take",
    "backup_verify",
    "restore_backup",
    "wal_receiver_services",
]


class Retention(BaseModel):
    removed: list[str]
    kept: list[str]
    wal_kept_from: str | None
    # Why nothing was removed this time (a restore or verification was reading the directory);
    # the next `--keep` run applies it.
    skipped: str | None = None


class BackupTaken(BaseModel):
    backup: BackupInfo
    retention: Retention | None


class BackupListing(BaseModel):
    directory: str
    backups: list[BackupInfo]
    # Interrupted backups (no info file): never restored, removed by `--keep`.
    incomplete: list[str]
    archived_wal_segments: int


class ArchivedWal(BaseModel):
    """The archived WAL after a backup (``backup.wal_archive.ArchiveCheck``): where it is
    continuous to, the newest commit in it (a `--to-time` must be earlier), and the first gap,
    damaged segment or missing timeline history (``error``; None when sound)."""

    continuous_to: str | None
    newest_restorable_at: datetime | None
    newest_restorable_lsn: str | None
    error: str | None

    @classmethod
    def of(cls, check: ArchiveCheck) -> ArchivedWal:
        return cls(
            continuous_to=check.continuous_to,
            newest_restorable_at=check.newest_commit_at,
            newest_restorable_lsn=check.newest_commit_lsn,
            error=check.describe_problem(),
        )

    def describe(self) -> str:
        """One phrase: how far the archived WAL reaches."""
        if self.newest_restorable_at is None:
            newest = "no commit archived after the backup (restorable to its end only)"
        else:
            newest = f"newest restorable point: {self.describe_newest()}"
        return f"archived WAL continuous to {self.continuous_to or 'the backup end'}; {newest}"

    def describe_newest(self) -> str:
        """The newest restorable point: `the commit at <time> (LSN …)`, or the backup's end."""
        if self.newest_restorable_at is None:
            return "the end of the backup (no commit archived after it)"
        return (
            f"the commit at {self.newest_restorable_at.isoformat()} "
            f"(LSN {self.newest_restorable_lsn})"
        )


class VerifiedBackup(BaseModel):
    """``ok``: pg_verifybackup passed on the backup and on every backup of its chain (an
    incremental is only as good as the backups it is incremental to), and the archived WAL after
    it is sound; ``error``: the first failure of these (without the backup's id)."""

    backup_id: str
    ok: bool
    error: str | None
    wal: ArchivedWal


class BackupVerification(BaseModel):
    backups: list[VerifiedBackup]
    # The chain restored into a scratch directory (`--restore-test`), and what it held.
    restore_test: list[str] | None
    restore_test_tables: dict[str, int] | None

    @property
    def ok(self) -> bool:
        return all(b.ok for b in self.backups)


class Restored(BaseModel):
    data_dir: str
    chain: list[str]
    to_time: datetime | None
    promoted_at: datetime
    slot_lsn: str
    previous_checkpoint_lsn: str | None
    messages_returned: int
    catch_up: dict[str, int]
    wal: ArchivedWal
    # The restored cluster's sync pause, as the source had it at the restore point.
    sync_paused: bool
    # `latest`: newer backups passed over as not restorable (`B (why)`), newest first.
    skipped: list[str]


def wal_receiver_services(database: Database, settings: Settings) -> list[BackgroundService]:
    """`pg_receivewal` for `up` when `[backup] archive_wal` is on and the server is a
    configured one (the embedded server archives by itself); otherwise none."""
    if not settings.backup.archive_wal or database.embedded:
        return []
    target = partial(
        receive_wal,
        database.url,
        backup_directory(settings) / "wal",
        settings.backup.wal_slot_name,
    )
    return [BackgroundService("wal-receiver", target)]


def backup_take(platform: Platform, kind: BackupKind, keep: int | None = None) -> BackupTaken:
    """Take a full or incremental backup of the platform's database; with ``keep``, then apply
    retention. Backup and retention hold the backup directory's exclusive lock (a flock on the
    directory: ``backup.lock.backup_lock``), so retention never removes a chain another backup
    is building on; retention also waits for no reader: while a restore or verification reads
    the directory it removes nothing and says why (``Retention.skipped``). Errors:
    ``BackupRunningError`` (another backup holds the lock), and see ``backup.take.take_backup``
    and ``backup.retention.prune``."""
    directory = backup_directory(platform.settings)
    with backup_lock(directory):
        with dedicated_session(platform, "hartonomous-backup") as connection:
            info = take_backup(connection, database_url(platform), directory, kind)
        retention = None
        if keep is not None:
            try:
                pruned = prune(directory, keep)
            except BackupDirectoryInUseError as exc:
                retention = Retention(removed=[], kept=[], wal_kept_from=None, skipped=str(exc))
            else:
                retention = Retention(
                    removed=pruned.removed, kept=pruned.kept, wal_kept_from=pruned.wal_kept_from
                )
    return BackupTaken(backup=info, retention=retention)


def backup_list(settings: Settings, directory: Path | None = None) -> BackupListing:
    """The complete backups (oldest first), interrupted ones, and the archive's size. Raises
    ``BackupDirectoryNotFoundError`` when the directory does not exist."""
    directory = existing_directory(directory or backup_directory(settings))
    wal = directory / "wal"
    segments = sum(1 for f in wal.iterdir() if len(f.name) == 24) if wal.is_dir() else 0
    return BackupListing(
        directory=str(directory),
        backups=list_backups(directory),
        incomplete=incomplete_backups(directory),
        archived_wal_segments=segments,
    )


def backup_verify(
    settings: Settings,
    backup_id: str | None = None,
    *,
    restore_test: bool = False,
    directory: Path | None = None,
) -> BackupVerification:
    """pg_verifybackup on one backup (or every one) and a check of the archived WAL after
    it (every segment present and readable by pg_waldump, timeline history files present:
    ``backup.wal_archive``); with ``restore_test`` also restore the
    newest chain (or ``backup_id``'s) into a scratch directory, start it and count rows.
    An incremental fails when a backup of its chain fails, naming it.
    Raises ``BackupDirectoryNotFoundError``, ``BackupNotFoundError`` for an unknown id or an
    empty directory, ``BackupDirectoryInUseError`` while retention removes from the directory;
    a failed check is reported, not raised, except during the restore test, which raises the
    restore's error."""
    directory = existing_directory(directory or backup_directory(settings))
    # Retention removes nothing while this reads (``backup.lock.reading_lock``).
    with reading_lock(directory):
        return _verify(directory, settings, backup_id, restore_test)


def _verify(
    directory: Path, settings: Settings, backup_id: str | None, restore_test: bool
) -> BackupVerification:
    every = list_backups(directory)
    backups = [find_backup(directory, backup_id)] if backup_id is not None else every
    if not backups:
        raise BackupNotFoundError(f"no complete backup in {directory / 'base'}")
    results: list[VerifiedBackup] = []
    dumped: Dumped = {}  # one pg_waldump per segment
    failures: dict[str, str | None] = {}  # pg_verifybackup once per backup: its failure

    def failure(backup: BackupInfo) -> str | None:
        if backup.backup_id not in failures:
            try:
                verify_backup(directory, backup)
            except BackupVerificationError as exc:
                failures[backup.backup_id] = exc.reason
            else:
                failures[backup.backup_id] = None
        return failures[backup.backup_id]

    for backup in backups:
        wal = ArchivedWal.of(check_archive(directory, backup, dumped))
        error = failure(backup) or _chain_failure(every, backup, failure)
        if error is None and wal.error is not None:
            error = f"archived WAL after it: {wal.error}"
        results.append(
            VerifiedBackup(backup_id=backup.backup_id, ok=error is None, error=error, wal=wal)
        )
    report = BackupVerification(backups=results, restore_test=None, restore_test_tables=None)
    if restore_test and report.ok:
        last = backups[-1]
        counted: dict[str, int] = {}

        def count_rows(connection: psycopg.Connection[Any]) -> dict[str, int]:
            for table in ("tenants", "atoms", "holdings", "billing_usage_ledger"):
                row = connection.execute(f"SELECT count(*) FROM {table}").fetchone()
                counted[table] = int(row[0]) if row else 0
            return counted

        scratch = Path(tempfile.mkdtemp(prefix="restore-test-", dir=directory))
        try:
            result = restore(
                directory, last.backup_id, scratch, None, cdc=settings.cdc, catch_up=count_rows
            )
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        report.restore_test = result.chain
        report.restore_test_tables = counted
    return report


def _chain_failure(
    every: list[BackupInfo], backup: BackupInfo, failure: Callable[[BackupInfo], str | None]
) -> str | None:
    """Why ``backup``'s chain cannot be restored: an earlier backup of it failed or is gone."""
    if backup.parent is None:
        return None
    try:
        chain = chain_of(every, backup)
    except BackupNotFoundError as exc:
        return str(exc)
    for earlier in reversed(chain[:-1]):
        reason = failure(earlier)
        if reason is not None:
            via = "" if earlier.backup_id == backup.parent else f" (through {backup.parent})"
            return (
                f"it is incremental to {earlier.backup_id}{via}, which failed verification: "
                f"{reason}"
            )
    return None


def restore_backup(
    settings: Settings,
    backup_id: str,
    data_dir: Path,
    to_time: datetime | None,
    *,
    directory: Path | None = None,
    accept_wal_gap: bool = False,
) -> Restored:
    """Restore ``backup_id`` (or ``latest``) into the new ``data_dir``, to ``to_time``, re-arm
    change capture and re-emit what the restore point left uncaptured (`graph catch-up`).
    ``accept_wal_gap``: without ``to_time``, restore to the end of the continuous archived WAL
    even when a gap or damaged segment cuts it (refused otherwise). Errors: see
    ``backup.restore.restore``; ``BackupDirectoryNotFoundError``."""
    directory = existing_directory(directory or backup_directory(settings))
    # Re-emitted events go where the sync workers read: the broker in the restored
    # database, or Kafka (which must answer then).
    with closing(open_transport(settings.message_broker)) as transport:
        result = restore(
            directory,
            backup_id,
            data_dir,
            to_time,
            cdc=settings.cdc,
            catch_up=lambda connection: catch_up(connection, transport).totals(),
            accept_wal_gap=accept_wal_gap,
        )
    return Restored(
        data_dir=str(result.data_dir),
        chain=result.chain,
        to_time=result.to_time,
        promoted_at=result.promoted_at,
        slot_lsn=result.rearmed.slot_lsn,
        previous_checkpoint_lsn=result.rearmed.previous_checkpoint_lsn,
        messages_returned=result.rearmed.messages_returned,
        catch_up=result.catch_up,
        wal=ArchivedWal.of(result.archive),
        sync_paused=result.sync_paused,
        skipped=result.skipped,
    )
