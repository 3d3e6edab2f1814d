"""Bringing a database to where the platform can run on it (`db upgrade`, `up`)."""

from __future__ import annotations

from sqlalchemy import Engine, text

from hartonomous.cdc import prepare_capture
from hartonomous.config import Settings
from hartonomous.db import Database, upgrade
from hartonomous.db.api_role import provision_api_role


def provision(database: Database, settings: Settings) -> bool:
    """Migrations at head, the API role granted, then change capture armed so no later change
    is missed.

    Returns whether capture is armed (it cannot be while `wal_level` is not `logical`). Raises
    ``ApiRoleError`` when the API role cannot be provisioned (docs/security.md, "Isolation").
    """
    upgrade(database.engine)
    provision_api_role(database.engine, settings)
    if not database.facts.logical_decoding:
        return False
    prepare_capture(database.url, settings)
    return True


def installed_pgvector(engine: Engine) -> str | None:
    """The pgvector version installed in the database (None when the extension is not)."""
    with engine.connect() as connection:
        version: str | None = connection.execute(
            text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        ).scalar_one_or_none()
    return version
