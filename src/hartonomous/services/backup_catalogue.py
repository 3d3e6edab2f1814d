"""The last backup, as `status` shows it (docs/operations.md, "status")."""

from __future__ import annotations

from dataclasses import dataclass

from hartonomous.backup.catalog import BackupInfo, chain_problem, list_backups, newest_restorable
from hartonomous.db.runtime import backup_directory
from hartonomous.services.platform import Platform

__all__ = ["BackupState", "backup_state"]


@dataclass(frozen=True)
class BackupState:
    """The newest complete backup, the newest restorable one (its whole chain listed), and
    why the newest is not restorable (None when it is, or when there is no backup)."""

    newest: BackupInfo | None
    restorable: BackupInfo | None
    problem: str | None


def backup_state(platform: Platform) -> BackupState:
    """The backups in ``[backup] directory`` as `status` judges them (docs/operations.md,
    "Backups and restore"). Reads the info files only (no pg_verifybackup: that is `backup
    verify`'s), so a chain whose full backup was removed is seen, a tampered file is not."""
    backups = list_backups(backup_directory(platform.settings))
    if not backups:
        return BackupState(None, None, None)
    newest = backups[-1]
    return BackupState(newest, newest_restorable(backups), chain_problem(backups, newest))
