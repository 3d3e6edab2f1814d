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
    enable_statement_statistics(database.engine)
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


def enable_statement_statistics(engine: Engine) -> bool:
    """Create pg_stat_statements when the server preloads it (the embedded one does); a
    configured server without it is left as it is and `/metrics` goes without SQL statement
    figures. Returns whether the extension is there."""
    with engine.begin() as connection:
        preloaded = connection.execute(
            text(
                "SELECT 'pg_stat_statements' = ANY(string_to_array("
                "replace(current_setting('shared_preload_libraries'), ' ', ''), ','))"
            )
        ).scalar()
        if not preloaded:
            return False
        connection.execute(text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
    return True
