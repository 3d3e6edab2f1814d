"""The backup directory: `base/<id>/` per backup (pg_basebackup's plain output, untouched, so
pg_verifybackup and pg_combinebackup see only their own files), `base/<id>.json` (what
`backup list` shows) and `wal/` (archived WAL segments).

A backup is complete when its `<id>.json` exists: it is written last, after pg_basebackup
succeeded. Folders without it are incomplete (a crash mid-backup) and are
listed as such, never restored, and removed by retention.
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from hartonomous.errors import NotFoundError

BackupKind = Literal["full", "incremental"]
_START_WAL = re.compile(r"^START WAL LOCATION: \S+ \(file ([0-9A-F]{24})\)$", re.MULTILINE)


class BackupNotFoundError(NotFoundError):
    """No complete backup of that id in the backup directory."""

    code = "backup-not-found"


class BackupInfo(BaseModel):
    """One complete backup. Times are the server's clock (UTC offset kept); LSNs `X/Y`."""

    backup_id: str
    kind: BackupKind
    # The backup this one is incremental to (None for a full backup), and its chain's full.
    parent: str | None
    full: str
    started_at: datetime
    # The server's time once pg_basebackup had finished: a restore target must not be earlier.
    finished_at: datetime
    start_lsn: str
    end_lsn: str
    timeline: int
    system_identifier: str
    server_version: str
    size_bytes: int


class BackupDirectoryNotFoundError(NotFoundError):
    """The backup directory does not exist (a mistyped `--backup-dir` or `[backup] directory`,
    or no backup was ever taken)."""

    code = "backup-directory-not-found"


def existing_directory(directory: Path) -> Path:
    """``directory``, absolute; ``BackupDirectoryNotFoundError`` when it does not exist (an
    existing empty one is fine: it holds no backup yet)."""
    directory = directory.absolute()
    if not directory.is_dir():
        raise BackupDirectoryNotFoundError(
            f"backup directory {directory} does not exist: check --backup-dir or "
            "[backup] directory (it is made by the first `hartonomous backup full`)"
        )
    return directory


def base_dir(directory: Path) -> Path:
    return directory / "base"


def wal_dir(directory: Path) -> Path:
    return directory / "wal"


def backup_path(directory: Path, backup_id: str) -> Path:
    return base_dir(directory) / backup_id


def new_backup_id(directory: Path, kind: BackupKind, moment: datetime) -> str:
    """`20261130T193801Z-full`; `-2`, `-3`… when that second is taken already."""
    stem = f"{moment.strftime('%Y%m%dT%H%M%SZ')}-{kind}"
    candidate, n = stem, 1
    while backup_path(directory, candidate).exists():
        n += 1
        candidate = f"{stem}-{n}"
    return candidate


def manifest_facts(path: Path) -> tuple[str, str, int, str]:
    """(start LSN, end LSN, timeline, system identifier) from pg_basebackup's backup_manifest."""
    manifest = json.loads((path / "backup_manifest").read_text())
    ranges = manifest["WAL-Ranges"]
    return (
        str(ranges[0]["Start-LSN"]),
        str(ranges[-1]["End-LSN"]),
        int(ranges[-1]["Timeline"]),
        str(manifest.get("System-Identifier", "")),
    )


def start_wal_file(path: Path) -> str | None:
    """The WAL segment the backup starts in (backup_label), for archive clean-up."""
    label = path / "backup_label"
    if not label.exists():
        return None
    match = _START_WAL.search(label.read_text(errors="replace"))
    return match.group(1) if match else None


def info_path(path: Path) -> Path:
    """`base/<id>.json` beside the backup folder `base/<id>`."""
    return path.with_name(path.name + ".json")


def write_info(path: Path, info: BackupInfo) -> None:
    info_path(path).write_text(info.model_dump_json(indent=2) + "\n")


def list_backups(directory: Path) -> list[BackupInfo]:
    """Complete backups, oldest first."""
    found: list[BackupInfo] = []
    base = base_dir(directory)
    if not base.is_dir():
        return found
    for child in base.iterdir():
        info = info_path(child)
        if child.is_dir() and info.is_file():
            found.append(BackupInfo.model_validate_json(info.read_text()))
    return sorted(found, key=lambda b: (b.finished_at, b.backup_id))


def incomplete_backups(directory: Path) -> list[str]:
    """Folders under base/ without their `<id>.json`: interrupted backups."""
    base = base_dir(directory)
    if not base.is_dir():
        return []
    return sorted(c.name for c in base.iterdir() if c.is_dir() and not info_path(c).exists())


def find_backup(directory: Path, backup_id: str) -> BackupInfo:
    for info in list_backups(directory):
        if info.backup_id == backup_id:
            return info
    raise BackupNotFoundError(f"no complete backup {backup_id!r} in {base_dir(directory)}")


def chain_of(backups: list[BackupInfo], last: BackupInfo) -> list[BackupInfo]:
    """The full backup and the incrementals leading to ``last``, oldest first."""
    by_id = {b.backup_id: b for b in backups}
    chain = [last]
    while chain[0].parent is not None:
        parent = by_id.get(chain[0].parent)
        if parent is None:
            raise BackupNotFoundError(
                f"backup {last.backup_id} needs {chain[0].parent}, which is gone"
            )
        chain.insert(0, parent)
    return chain


def chain_problem(backups: list[BackupInfo], last: BackupInfo) -> str | None:
    """Why ``last``'s chain cannot be restored from what the directory lists (an earlier
    backup of it is gone: `backup NAME needs PARENT, which is gone`), or None. Reads the
    info files only; pg_verifybackup's checks are ``backup.verify``'s."""
    try:
        chain_of(backups, last)
    except BackupNotFoundError as exc:
        return str(exc)
    return None


def newest_restorable(backups: list[BackupInfo]) -> BackupInfo | None:
    """The newest of ``backups`` (oldest first) whose whole chain is listed, or None."""
    return next((b for b in reversed(backups) if chain_problem(backups, b) is None), None)


def remove_backup(directory: Path, backup_id: str) -> None:
    """Remove the backup's info file first (it is no longer complete), then its folder."""
    path = backup_path(directory, backup_id)
    info_path(path).unlink(missing_ok=True)
    shutil.rmtree(path, ignore_errors=True)
