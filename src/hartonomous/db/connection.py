"""Engines, server facts and the one-line errors an operator sees when a database is unusable."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar, overload

import psycopg
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from hartonomous.config import masked_url
from hartonomous.config.sections import DatabaseSettings
from hartonomous.errors import UnavailableError

REQUIRED_PGVECTOR = (0, 8)
"""Oldest pgvector the migrations accept: search relies on its iterative index scans."""

ConnectionT = TypeVar("ConnectionT", bound="psycopg.Connection[Any]")


class DatabaseUnavailableError(UnavailableError):
    """The database cannot be used; the message names the URL (password masked) and the cause.

    Also what services raise when the server drops or refuses a connection mid-operation
    (services/database_errors.py)."""

    code = "database-unavailable"
    title = "Database unavailable"


class PgvectorTooOldError(DatabaseUnavailableError):
    """The pgvector installed in (or offered to) the database is older than REQUIRED_PGVECTOR."""


@dataclass(frozen=True)
class ServerFacts:
    server_version: str
    wal_level: str
    pgvector_available: bool
    pgvector_installed_version: str | None
    pgvector_default_version: str | None = None
    """The version `CREATE EXTENSION vector` would install (the server's pgvector package)."""

    @property
    def logical_decoding(self) -> bool:
        return self.wal_level == "logical"


def pgvector_version_problem(installed: str | None, offered: str | None) -> str | None:
    """Why the pgvector in effect is too old (None when it is recent enough or absent).

    In effect: the version installed in the database, else the one the server would install.
    """
    version = installed or offered
    if version is None or _version_tuple(version) >= REQUIRED_PGVECTOR:
        return None
    required = ".".join(map(str, REQUIRED_PGVECTOR))
    if installed:
        return (
            f"pgvector {version} is installed in the database; Hartonomous needs >= {required}: "
            f"install pgvector >= {required} on the server, then run "
            "`ALTER EXTENSION vector UPDATE` in the database"
        )
    return (
        f"the server offers pgvector {version}; Hartonomous needs >= {required}: "
        f"install pgvector >= {required} on the server"
    )


def _version_tuple(version: str) -> tuple[int, ...]:
    """Each part's leading digits: 0.7.4 -> (0, 7, 4), 0.8.0-dev -> (0, 8, 0)."""
    parts = []
    for part in version.split("."):
        digits = part[: len(part) - len(part.lstrip("0123456789"))]
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def normalise_url(url: str) -> str:
    """Accept plain libpq-style URLs and use the psycopg 3 driver for them."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseUnavailableError(f"invalid database URL {masked_url(url)!r}") from None
    if parsed.get_backend_name() != "postgresql":
        raise DatabaseUnavailableError(
            f"unsupported database URL {masked_url(url)!r}: only postgresql:// is supported"
        )
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def libpq_url(url: str) -> str:
    """The SQLAlchemy URL as plain psycopg / libpq expects it (no `+psycopg` driver suffix)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def session_options(settings: DatabaseSettings) -> str:
    """libpq `options` giving a session `[database]`'s statement and lock timeouts (in ms).

    Every session of the platform is opened with them (engines and `connect`): no statement
    and no lock wait is unbounded. A timeout raises SQLSTATE 57014 / 55P03, which
    `messaging.resilience.is_transient` classes as worth a retry.
    """
    statement_ms = settings.command_timeout_seconds * 1000
    lock_ms = max(1, round(settings.lock_timeout_seconds * 1000))
    return f"-c statement_timeout={statement_ms} -c lock_timeout={lock_ms}"


# psycopg's `Connection.connect` classmethod as psycopg defines it, taken before anything can
# instrument it (observability/tracing.py imports this module first).
_PSYCOPG_CONNECT: Any = psycopg.Connection.__dict__["connect"]


@overload
def connect(
    url: str, settings: DatabaseSettings, *, application_name: str, autocommit: bool = True
) -> psycopg.Connection[Any]: ...


@overload
def connect(
    url: str,
    settings: DatabaseSettings,
    *,
    application_name: str,
    autocommit: bool = True,
    connection_class: type[ConnectionT],
) -> ConnectionT: ...


def connect(
    url: str,
    settings: DatabaseSettings,
    *,
    application_name: str,
    autocommit: bool = True,
    connection_class: type[Any] | None = None,
) -> Any:
    """A psycopg session (default: autocommit) with the configured connect, statement and lock
    timeouts; `url` may be a SQLAlchemy or plain libpq URL. Raises `psycopg.OperationalError`
    when the server cannot be reached."""
    cls = connection_class or psycopg.Connection
    # A subclass is made with psycopg's own classmethod: OpenTelemetry's psycopg instrumentation
    # replaces `Connection.connect` with a wrapper of the method bound to `psycopg.Connection`
    # (and its uninstrument puts that bound method back), so `Subclass.connect` would return a
    # plain Connection (observability/tracing.py). Subclass sessions go untraced.
    make = cls.connect if cls is psycopg.Connection else _PSYCOPG_CONNECT.__get__(None, cls)
    return make(
        libpq_url(url),
        autocommit=autocommit,
        application_name=application_name,
        connect_timeout=settings.connect_timeout_seconds,
        options=session_options(settings),
    )


def open_engine(url: str, settings: DatabaseSettings) -> Engine:
    normalised = normalise_url(url)
    try:
        return create_engine(
            normalised,
            pool_size=settings.pool_size,
            pool_pre_ping=True,
            connect_args={
                "connect_timeout": settings.connect_timeout_seconds,
                "options": session_options(settings),
                "application_name": "hartonomous",
            },
        )
    except (ArgumentError, NoSuchModuleError) as exc:
        raise DatabaseUnavailableError(f"invalid database URL {masked_url(url)!r}: {exc}") from None


def describe_failure(url: str, exc: BaseException) -> str:
    """One line: what could not be reached and why (first line of the driver's message)."""
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    reason = lines[0] if lines else type(cause).__name__
    if isinstance(cause, psycopg.OperationalError) and len(lines) > 1 and "failed:" in reason:
        reason = reason.split("failed:", 1)[1].strip() or lines[1]
    return f"cannot use database {masked_url(url)}: {reason}"


def inspect_server(engine: Engine) -> ServerFacts:
    """Connect once and read what the platform depends on."""
    url = engine.url.render_as_string(hide_password=False)
    try:
        with engine.connect() as connection:
            version = connection.execute(text("SHOW server_version")).scalar_one()
            wal_level = connection.execute(text("SHOW wal_level")).scalar_one()
            row = connection.execute(
                text(
                    "SELECT default_version, installed_version FROM pg_available_extensions "
                    "WHERE name = 'vector'"
                )
            ).one_or_none()
    except DBAPIError as exc:
        raise DatabaseUnavailableError(describe_failure(url, exc)) from None
    except psycopg.Error as exc:
        raise DatabaseUnavailableError(describe_failure(url, exc)) from None
    return ServerFacts(
        server_version=str(version),
        wal_level=str(wal_level),
        pgvector_available=row is not None,
        pgvector_installed_version=None if row is None else row.installed_version,
        pgvector_default_version=None if row is None else row.default_version,
    )
