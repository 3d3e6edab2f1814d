"""Opening the configured database: the embedded server or `database.url`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import structlog
from sqlalchemy import Engine

from hartonomous.config import Settings, masked_url
from hartonomous.db.connection import (
    DatabaseUnavailableError,
    ServerFacts,
    inspect_server,
    open_engine,
)
from hartonomous.db.embedded import EmbeddedPostgres

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Database:
    url: str
    engine: Engine
    facts: ServerFacts
    embedded: bool

    @property
    def display_url(self) -> str:
        return masked_url(self.url)


@contextmanager
def open_database(settings: Settings) -> Iterator[Database]:
    """Yield a usable database; refuse a server without pgvector; warn when CDC cannot work."""
    embedded: EmbeddedPostgres | None = None
    url = settings.database.url
    if not url:
        embedded = EmbeddedPostgres(settings.data_dir)
        embedded.start()
        url = embedded.url
    try:
        engine = open_engine(url, settings.database)
        try:
            facts = inspect_server(engine)
            if not facts.pgvector_available:
                raise DatabaseUnavailableError(
                    f"database {masked_url(url)} cannot be used: the pgvector extension is not "
                    "available on that server (install pgvector, then run `hartonomous db upgrade`)"
                )
            if not facts.logical_decoding:
                log.warning(
                    "wal_level_not_logical",
                    wal_level=facts.wal_level,
                    consequence="change data capture cannot run until wal_level = logical",
                )
            yield Database(url=url, engine=engine, facts=facts, embedded=embedded is not None)
        finally:
            engine.dispose()
    finally:
        if embedded is not None:
            embedded.stop()
