"""What application services run against: the database engine and the effective settings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine

from hartonomous.config import Settings
from hartonomous.db import Database, head_revision, open_database

__all__ = ["Platform", "open_platform"]


@dataclass(frozen=True)
class Platform:
    """An open database and the settings every service reads its limits from.

    ``engine`` is the SQLAlchemy engine of the database (services only: entry points never
    touch it); ``migrations_head`` the revision this code needs.
    """

    engine: Engine
    settings: Settings
    migrations_head: str
    database: Database | None = None


@contextmanager
def open_platform(settings: Settings, *, require_current_schema: bool = True) -> Iterator[Platform]:
    """Open the configured database (``db.open_database``) as a ``Platform``; close it after.

    Raises ``UnavailableError`` subclasses when the database cannot be used or (with
    ``require_current_schema``) its migrations are not at head.
    """
    with open_database(settings, require_current_schema=require_current_schema) as database:
        yield Platform(
            engine=database.engine,
            settings=settings,
            migrations_head=head_revision(),
            database=database,
        )
