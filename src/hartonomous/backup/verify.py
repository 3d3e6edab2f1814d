"""`backup verify`: pg_verifybackup on each backup (manifest checksums and the WAL it needs)."""

from __future__ import annotations

from pathlib import Path

from hartonomous.backup.catalog import BackupInfo, backup_path
from hartonomous.backup.tools import BackupToolError, run_program
from hartonomous.errors import ConflictError


class BackupVerificationError(ConflictError):
    """A backup is incomplete or was changed since it was taken (pg_verifybackup's line).
    ``reason``: that line alone (the message also names the backup)."""

    code = "backup-verification-failed"

    def __init__(self, backup_id: str, reason: str) -> None:
        super().__init__(f"backup {backup_id} failed verification: {reason}")
        self.reason = reason


def verify_backup(directory: Path, backup: BackupInfo) -> None:
    """Raise ``BackupVerificationError`` naming the backup and pg_verifybackup's first error
    when a file is missing, extra or changed, or its WAL cannot be parsed."""
    try:
        run_program("pg_verifybackup", "--quiet", str(backup_path(directory, backup.backup_id)))
    except BackupToolError as exc:
        raise BackupVerificationError(backup.backup_id, str(exc)) from None
