"""The database itself: migrations (upgrade, downgrade, current, status) and reference data.

Each use case takes a ``Platform`` opened without requiring the current schema
(``open_platform(settings, require_current_schema=False)``): these are the commands that bring
the schema to head. Driver errors become ``HartonomousError`` kinds (``database_errors``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from hartonomous.db import Database, current_revision, downgrade, head_revision, upgrade
from hartonomous.db.migrate import known_revision
from hartonomous.errors import UsageError
from hartonomous.ops.provision import provision
from hartonomous.ops.seed import SeedReport, seed
from hartonomous.services.database_errors import database_errors
from hartonomous.services.platform import Platform

if TYPE_CHECKING:
    from hartonomous.ingest.pipeline import JobOutcome

__all__ = [
    "DatabaseStatus",
    "RevisionChange",
    "UnknownRevisionError",
    "database_revision",
    "database_status",
    "downgrade_database",
    "seed_database",
    "upgrade_database",
]


class UnknownRevisionError(UsageError):
    """A migration revision the code does not have."""

    code = "unknown-revision"


@dataclass(frozen=True)
class RevisionChange:
    before: str | None  # None: no revision (an empty database)
    after: str | None

    @property
    def changed(self) -> bool:
        return self.before != self.after


@dataclass(frozen=True)
class DatabaseStatus:
    url: str  # password masked
    embedded: bool
    server_version: str
    wal_level: str
    pgvector_installed: str | None
    pgvector_available: str | None
    revision: str | None
    head: str
    at_head: bool


def _require_known(revision: str) -> None:
    if not known_revision(revision):
        raise UnknownRevisionError(f"unknown migration revision {revision!r}")


def _database(platform: Platform) -> Database:
    assert platform.database is not None, "open the platform with open_platform"
    return platform.database


def upgrade_database(platform: Platform, revision: str = "head") -> RevisionChange:
    """Apply migrations up to ``revision``; at head also arm change capture (``provision``)."""
    _require_known(revision)
    with database_errors():
        before = current_revision(platform.engine)
        if revision == "head":
            provision(_database(platform), platform.settings)
        else:
            upgrade(platform.engine, revision)
        return RevisionChange(before, current_revision(platform.engine))


def downgrade_database(platform: Platform, revision: str) -> RevisionChange:
    """Revert migrations down to ``revision`` (``-1``, ``base``, an id)."""
    _require_known(revision)
    with database_errors():
        before = current_revision(platform.engine)
        downgrade(platform.engine, revision)
        return RevisionChange(before, current_revision(platform.engine))


def database_revision(platform: Platform) -> str | None:
    with database_errors():
        return current_revision(platform.engine)


def database_status(platform: Platform) -> DatabaseStatus:
    """Where the database is, what it runs and whether migrations are at head."""
    database = _database(platform)
    revision = database_revision(platform)
    facts = database.facts
    return DatabaseStatus(
        url=database.display_url,
        embedded=database.embedded,
        server_version=facts.server_version,
        wal_level=facts.wal_level,
        pgvector_installed=facts.pgvector_installed_version,
        pgvector_available=facts.pgvector_default_version,
        revision=revision,
        head=head_revision(),
        at_head=revision == head_revision(),
    )


def seed_database(
    platform: Platform, *, update_plan: bool = False, samples: bool = False
) -> tuple[SeedReport, JobOutcome | None]:
    """Seed the default rate plan, a sample tenant and principal; with ``samples`` also ingest
    the sample documents and the MiniLM model (the job's outcome)."""
    # Imported here: ingestion loads numpy and the embedders, which the other database
    # commands (and every CLI start) do not need.
    from hartonomous.ops.sample_content import ingest_samples

    with database_errors():
        report = seed(platform.engine, platform.settings, update_plan=update_plan)
        job = ingest_samples(platform.engine) if samples else None
    return report, job
