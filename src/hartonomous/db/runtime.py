"""Opening the configured database: the embedded server or `database.url`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

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
from hartonomous.db.migrate import current_revision, head_revision
from hartonomous.errors import UnavailableError

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Database:
    url: str
    engine: Engine
    facts: ServerFacts
    embedded: bool
    # This command started the embedded server read-only, so it does not archive by design.
    archiving_skipped: bool = False

    @property
    def display_url(self) -> str:
        return masked_url(self.url)


EmbeddedStart = Literal["initialise", "start", "join"]
"""What opening the embedded server may do (docs/operations.md, "Which commands start the
database"): ``initialise`` a new cluster in a data dir without one (`up`, `db upgrade`);
``start`` the server of an existing cluster when no `up` holds the data dir (every other
command; under a running `up` they join its server and never start it); only ``join`` a
running server (`serve`)."""


class SchemaNotCurrentError(UnavailableError):
    """The database's migrations are not at the code's head; the message says what to run."""


@contextmanager
def open_database(
    settings: Settings,
    *,
    require_current_schema: bool = True,
    embedded_start: EmbeddedStart = "start",
    read_only: bool = False,
) -> Iterator[Database]:
    """Yield a usable database; refuse a server without pgvector; warn when CDC cannot work.

    Commands that work on the schema itself (migrations, status, smoke, `up`) pass
    `require_current_schema=False`; every other command is refused, with the remedy, on a
    database whose migrations are not at head, instead of failing on a missing table.
    ``embedded_start`` says what may happen to the embedded server (``EmbeddedStart``):
    ``NoClusterError`` for a data dir without a cluster unless ``initialise``;
    ``EmbeddedNotRunningError`` when a server that must be joined is not running.
    ``read_only``: the command writes nothing; an embedded server it starts does not archive
    (``EmbeddedPostgres``: its stop would archive a segment).
    """
    embedded: EmbeddedPostgres | None = None
    url = settings.database.url
    if not url:
        embedded = EmbeddedPostgres(
            settings.data_dir,
            archive_dir=archive_directory(settings),
            archive_timeout_seconds=settings.backup.archive_timeout_seconds,
            read_only=read_only,
        )
        if embedded_start == "join":
            embedded.attach()
        else:
            embedded.start(initialise=embedded_start == "initialise")
        url = embedded.url
    try:
        engine = open_engine(url, settings.database)
        try:
            facts = inspect_server(engine)
            if not facts.pgvector_available:
                unusable = DatabaseUnavailableError(
                    f"database {masked_url(url)} cannot be used: the pgvector extension is not "
                    "available on that server (install pgvector, then migrate the database)"
                )
                unusable.cli_hint = "install pgvector, then run `hartonomous db upgrade`"
                raise unusable
            if not facts.logical_decoding:
                log.warning(
                    "wal_level_not_logical",
                    wal_level=facts.wal_level,
                    consequence="change data capture cannot run until wal_level = logical",
                )
            if require_current_schema:
                _require_head(engine, url)
            yield Database(
                url=url,
                engine=engine,
                facts=facts,
                embedded=embedded is not None,
                archiving_skipped=embedded is not None and embedded.archiving_skipped,
            )
        finally:
            engine.dispose()
    finally:
        if embedded is not None:
            embedded.stop()


def backup_directory(settings: Settings) -> Path:
    """`[backup] directory`, or `<data_dir>/backups` when empty; absolute (a relative one is
    taken from this process's working directory): the backup programs run from `/`."""
    configured = settings.backup.directory
    return (Path(configured) if configured else settings.data_dir / "backups").absolute()


def archive_directory(settings: Settings) -> Path | None:
    """Where the embedded server archives WAL (`<backup directory>/wal`), None when off."""
    return backup_directory(settings) / "wal" if settings.backup.archive_wal else None


def _require_head(engine: Engine, url: str) -> None:
    current = current_revision(engine)
    head = head_revision()
    if current != head:
        behind = SchemaNotCurrentError(
            f"database {masked_url(url)} is at migration {current or 'none (empty)'}, "
            f"the code needs {head}"
        )
        behind.cli_hint = "run `hartonomous db upgrade`"
        raise behind
