"""Retention (`--keep N`): the N newest full backups with their incrementals stay; older
chains, interrupted backups and archived WAL (segments and backup history files) older than the
oldest kept backup go."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hartonomous.backup.catalog import (
    backup_path,
    incomplete_backups,
    list_backups,
    remove_backup,
    start_wal_file,
    wal_dir,
)
from hartonomous.backup.lock import retention_lock
from hartonomous.backup.tools import run_program
from hartonomous.errors import UsageError


@dataclass
class Pruned:
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    # The oldest WAL segment kept in wal/ (None: the archive was not cleaned).
    wal_kept_from: str | None = None


def prune(directory: Path, keep: int) -> Pruned:
    """Keep the ``keep`` newest full backups (and their incrementals); remove the rest.

    Raises ``UsageError`` for ``keep`` < 1 (a retention that keeps nothing is a mistake), and
    ``BackupDirectoryInUseError`` (nothing removed) while a restore or verification reads the
    directory (``lock.reading_lock``).
    """
    if keep < 1:
        raise UsageError(f"--keep {keep}: keep at least 1 full backup")
    with retention_lock(directory):
        return _prune(directory, keep)


def _prune(directory: Path, keep: int) -> Pruned:
    backups = list_backups(directory)
    fulls = [b.backup_id for b in backups if b.kind == "full"]
    kept_fulls = set(fulls[-keep:])
    report = Pruned()
    for backup in backups:
        if backup.full in kept_fulls:
            report.kept.append(backup.backup_id)
        else:
            remove_backup(directory, backup.backup_id)
            report.removed.append(backup.backup_id)
    for leftover in incomplete_backups(directory):
        remove_backup(directory, leftover)
        report.removed.append(leftover)
    oldest = next((b for b in backups if b.backup_id in report.kept), None)
    archive = wal_dir(directory)
    if oldest is not None and archive.is_dir():
        segment = start_wal_file(backup_path(directory, oldest.backup_id))
        if segment is not None:
            # Every segment older than the oldest kept backup's first one is of no use, nor
            # are the backup history files (`<segment>.<offset>.backup`) of those (-b).
            run_program("pg_archivecleanup", "-b", str(archive), segment)
            report.wal_kept_from = segment
    return report
