"""Database access: the embedded server, engines, migrations and table definitions."""

from hartonomous.db.connection import DatabaseUnavailableError, ServerFacts, libpq_url
from hartonomous.db.embedded import EmbeddedDatabaseError, EmbeddedPostgres
from hartonomous.db.migrate import current_revision, downgrade, head_revision, upgrade
from hartonomous.db.runtime import Database, SchemaNotCurrentError, open_database

__all__ = [
    "Database",
    "DatabaseUnavailableError",
    "EmbeddedDatabaseError",
    "EmbeddedPostgres",
    "SchemaNotCurrentError",
    "ServerFacts",
    "current_revision",
    "downgrade",
    "head_revision",
    "libpq_url",
    "open_database",
    "upgrade",
]
