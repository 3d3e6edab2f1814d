"""The last backup, as `status` shows it (docs/operations.md, "status")."""

from __future__ import annotations

from datetime import datetime

from hartonomous.backup.catalog import list_backups
from hartonomous.db.runtime import backup_directory
from hartonomous.services.platform import Platform

__all__ = ["last_backup_at"]


def last_backup_at(platform: Platform) -> datetime | None:
    """When the newest complete backup in ``[backup] directory`` ended (the server's clock), or
    ``None`` when there is none (docs/operations.md, "Backups and restore")."""
    backups = list_backups(backup_directory(platform.settings))
    return backups[-1].finished_at if backups else None
