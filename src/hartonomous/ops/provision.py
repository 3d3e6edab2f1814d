"""Bringing a database to where the platform can run on it (`db upgrade`, `up`)."""

from __future__ import annotations

from hartonomous.cdc import prepare_capture
from hartonomous.config import Settings
from hartonomous.db import Database, upgrade


def provision(database: Database, settings: Settings) -> bool:
    """Migrations at head, then change capture armed so no later change is missed.

    Returns whether capture is armed (it cannot be while `wal_level` is not `logical`).
    """
    upgrade(database.engine)
    if not database.facts.logical_decoding:
        return False
    prepare_capture(database.url, settings)
    return True
