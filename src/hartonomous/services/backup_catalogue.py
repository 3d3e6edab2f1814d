"""The last backup, as `status` shows it (docs/operations.md, "status").

No backup catalogue exists yet: ``last_backup`` answers ``None`` ("no backups") until the
backup commands record their backups; then it reads their catalogue. `status` only calls this.
"""

from __future__ import annotations

from datetime import datetime

from hartonomous.services.platform import Platform

__all__ = ["last_backup_at"]


def last_backup_at(platform: Platform) -> datetime | None:
    """When the newest complete backup ended (UTC), or ``None`` when there is none."""
    del platform  # the catalogue to read is not there yet
    return None
