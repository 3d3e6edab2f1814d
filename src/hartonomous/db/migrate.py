"""Alembic, driven from code: upgrade, downgrade, current and head revisions."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from hartonomous.config import masked_url
from hartonomous.db.connection import PgvectorTooOldError, pgvector_version_problem

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "the migrations folder has no revisions"
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def require_pgvector(connection: Connection) -> None:
    """Raise PgvectorTooOldError naming the installed (or offered) and required versions."""
    row = connection.execute(
        text(
            "SELECT installed_version, default_version FROM pg_available_extensions "
            "WHERE name = 'vector'"
        )
    ).one_or_none()
    if row is None:
        return  # no pgvector at all: CREATE EXTENSION says so in the first migration
    problem = pgvector_version_problem(row.installed_version, row.default_version)
    if problem is not None:
        url = connection.engine.url.render_as_string(hide_password=False)
        raise PgvectorTooOldError(f"database {masked_url(url)} cannot be used: {problem}")


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Idempotent: at the target already, nothing runs. All steps commit in one transaction.

    Raises PgvectorTooOldError (before any step) when the database's pgvector is older than
    `connection.REQUIRED_PGVECTOR`.
    """
    with engine.begin() as connection:
        require_pgvector(connection)
        config = _config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def downgrade(engine: Engine, revision: str) -> None:
    with engine.begin() as connection:
        config = _config()
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def known_revision(revision: str) -> bool:
    if revision in ("head", "base") or revision.startswith(("-", "+")):
        return True
    try:
        return ScriptDirectory.from_config(_config()).get_revision(revision) is not None
    except Exception:  # noqa: BLE001 - alembic raises several types for "no such revision"
        return False
