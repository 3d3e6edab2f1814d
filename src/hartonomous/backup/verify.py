"""`backup verify`: pg_verifybackup on each backup (manifest checksums and the WAL it needs),
then the files pg_verifybackup skips by design checked against the manifest here."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import google_crc32c

from hartonomous.backup.catalog import BackupInfo, backup_path
from hartonomous.backup.tools import BackupToolError, run_program
from hartonomous.errors import ConflictError

# What pg_verifybackup ignores unless told otherwise (PostgreSQL 18, `--ignore`): the
# manifest (it checks the manifest's own checksum), `pg_wal` (it parses the WAL instead) and
# these, which a server or pg_basebackup -R may write after the backup. A restore starts
# from them as they are, so the ones the manifest lists must match it, and a signal file the
# manifest does not list must not be there (it would start the restored server as a standby).
SKIPPED_BY_PG_VERIFYBACKUP = ("postgresql.auto.conf", "recovery.signal", "standby.signal")


class BackupVerificationError(ConflictError):
    """A backup is incomplete or was changed since it was taken (pg_verifybackup's line, or
    this module's for a file pg_verifybackup skips). ``reason``: that line alone (the
    message also names the backup)."""

    code = "backup-verification-failed"

    def __init__(self, backup_id: str, reason: str) -> None:
        super().__init__(f"backup {backup_id} failed verification: {reason}")
        self.reason = reason


def verify_backup(directory: Path, backup: BackupInfo) -> None:
    """Raise ``BackupVerificationError`` naming the backup and the first error when a file is
    missing, extra or changed, or its WAL cannot be parsed: pg_verifybackup's line, then
    ``skipped_file_problem``'s for the files pg_verifybackup skips."""
    path = backup_path(directory, backup.backup_id)
    try:
        run_program("pg_verifybackup", "--quiet", str(path))
    except BackupToolError as exc:
        raise BackupVerificationError(backup.backup_id, str(exc)) from None
    problem = skipped_file_problem(path)
    if problem is not None:
        raise BackupVerificationError(backup.backup_id, problem)


def skipped_file_problem(path: Path) -> str | None:
    """The first of ``SKIPPED_BY_PG_VERIFYBACKUP`` in backup ``path`` that differs from its
    ``backup_manifest`` entry (missing, other size, other checksum: CRC32C as PostgreSQL
    writes it, or SHA-224/256/384/512), or is a signal file the manifest does not list; None
    when all agree. Run after pg_verifybackup, which has checked the manifest itself."""
    manifest = json.loads((path / "backup_manifest").read_text())
    listed = {
        entry["Path"]: entry
        for entry in manifest.get("Files", [])
        if entry.get("Path") in SKIPPED_BY_PG_VERIFYBACKUP
    }
    for name in SKIPPED_BY_PG_VERIFYBACKUP:
        on_disk = path / name
        entry = listed.get(name)
        if entry is None:
            if name.endswith(".signal") and on_disk.exists():
                return f'"{name}" is present on disk but not in the manifest'
            continue
        if not on_disk.is_file():
            return f'"{name}" is present in the manifest but not on disk'
        try:
            content = on_disk.read_bytes()
        except OSError as exc:
            return f'"{name}" cannot be read: {exc.strerror}'
        if len(content) != int(entry["Size"]):
            return (
                f'"{name}" has size {len(content)} on disk but size {entry["Size"]} in the manifest'
            )
        if not _checksum_matches(content, entry):
            return f'checksum mismatch for file "{name}"'
    return None


def _checksum_matches(content: bytes, entry: dict[str, Any]) -> bool:
    algorithm = str(entry.get("Checksum-Algorithm", "NONE")).upper()
    expected = str(entry.get("Checksum", "")).lower()
    if algorithm == "NONE":
        return True
    if algorithm == "CRC32C":
        # PostgreSQL writes the CRC's four bytes as they lie in memory (its own byte order).
        actual: str = google_crc32c.value(content).to_bytes(4, sys.byteorder).hex()
    else:  # SHA224 / SHA256 / SHA384 / SHA512
        actual = hashlib.new(algorithm.lower(), content).hexdigest()
    return actual == expected
