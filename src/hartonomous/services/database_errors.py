"""Driver errors become ``HartonomousError`` kinds at the service boundary, with one-line reasons.

A database refusal nobody anticipated (a dropped table, a lock or statement timeout, a lost
connection) reaches the caller as ``DatabaseFailedError`` (exit 1, HTTP 500) or, when the
server cannot be reached or is shutting down or restarting (SQLSTATE 57P01-57P03, class 08),
``DatabaseUnavailableError`` (exit 1, HTTP 503); the message is
``database error: <the driver's first line>`` (``database_error_reason``). Services wrap their
work in ``database_errors()``; the CLI's and the API's last resorts call
``as_hartonomous_error`` for work that is not behind a service yet (an upload's job start, a
command), so a database restart is a 503 `database-unavailable`, not a 500.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy.exc import DBAPIError

from hartonomous.db.connection import DatabaseUnavailableError
from hartonomous.errors import HartonomousError, OperationFailedError

__all__ = [
    "DatabaseFailedError",
    "DatabaseUnavailableError",
    "as_hartonomous_error",
    "database_error_reason",
    "database_errors",
]

# lock_not_available (lock_timeout) and query_canceled (statement_timeout): PostgreSQL's message
# ("canceling statement due to lock timeout") names neither the table nor the statement.
_TIMEOUT_SQLSTATES = frozenset({"55P03", "57014"})
# The server is going away or not yet accepting work: admin_shutdown, crash_shutdown,
# cannot_connect_now (starting up, shutting down, in recovery), and connection exceptions
# (class 08). A retry later succeeds, so these are "unavailable", not a failed statement.
_UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03"})
_STATEMENT_SHOWN = 120


class DatabaseFailedError(OperationFailedError):
    """The database refused a statement; the message is ``database_error_reason``'s line."""

    code = "database-error"
    title = "Database error"


def database_error_reason(failure: BaseException) -> str:
    """`database error: <the driver's first line>` for an unanticipated database error.

    `failure` is a psycopg error or a SQLAlchemy `DBAPIError` wrapping one. For a lock or
    statement timeout the reason also names the statement that waited (its first 120
    characters, whitespace squashed: the table follows `INSERT INTO`, `UPDATE`, `FROM`) and
    PostgreSQL's context line when it gives one (`while locking tuple … in relation "…"`).
    """
    cause = getattr(failure, "orig", None) or failure
    first_line = next(iter(str(cause).strip().splitlines()), type(cause).__name__)
    if getattr(cause, "sqlstate", None) not in _TIMEOUT_SQLSTATES:
        return f"database error: {first_line}"
    details: list[str] = []
    diag = getattr(cause, "diag", None)
    context = getattr(diag, "context", None)
    if context:
        details.append(" ".join(str(context).split()))
    statement = getattr(failure, "statement", None)
    if statement:
        squashed = " ".join(str(statement).split())
        if len(squashed) > _STATEMENT_SHOWN:
            squashed = squashed[:_STATEMENT_SHOWN] + "…"
        details.append(f"statement: {squashed}")
    suffix = f" ({'; '.join(details)})" if details else ""
    return f"database error: {first_line}{suffix}"


def as_hartonomous_error(failure: BaseException) -> HartonomousError | None:
    """``failure`` as a ``HartonomousError`` kind when it is a driver error; None otherwise."""
    if not isinstance(failure, DBAPIError | psycopg.Error):
        return None
    cause = getattr(failure, "orig", None) or failure
    sqlstate = getattr(cause, "sqlstate", None)
    unavailable = (
        # No server answer (unreachable or dropped), or the server saying it is going away.
        (isinstance(cause, psycopg.OperationalError) and sqlstate is None)
        or sqlstate in _UNAVAILABLE_SQLSTATES
        or (sqlstate or "").startswith("08")
    )
    kind: type[HartonomousError] = DatabaseUnavailableError if unavailable else DatabaseFailedError
    return kind(database_error_reason(failure))


@contextmanager
def database_errors() -> Iterator[None]:
    """Re-raise a driver error raised inside as its ``HartonomousError`` kind (chained)."""
    try:
        yield
    except (DBAPIError, psycopg.Error) as failure:
        wrapped = as_hartonomous_error(failure)
        assert wrapped is not None
        raise wrapped from failure
