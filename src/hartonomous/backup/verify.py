"""`backup verify`: pg_verifybackup on each backup (manifest checksums and the WAL it needs)."""

from __future__ import annotations

from pathlib import Path

from hartonomous.backup.catalog import BackupInfo, backup_path
from hartonomous.backup.tools import BackupToolError, run_program
from hartonomous.errors import ConflictError


class BackupVerificationError(ConflictError):
    """A backup is incomplete or was changed since it was taken (pg_verifybackup's line)."""

    code = "backup-verification-failed"


def verify_backup(directory: Path, backup: BackupInfo) -> None:
    """Raise ``BackupVerificationError`` naming the backup and pg_verifybackup's first error
    when a file is missing, extra or changed, or its WAL cannot be parsed."""
    try:
        run_program("pg_verifybackup", "--quiet", str(backup_path(directory, backup.backup_id)))
    except BackupToolError as exc:
        raise BackupVerificationError(
            f"backup {backup.backup_id} failed verification: {exc}"
        ) from None
