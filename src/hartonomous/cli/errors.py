"""How the command line reports failures.

Exit codes (README): 0 success, 1 the work failed, 2 the command line asked for something that
cannot run as given. Every error meant for a reader is a ``HartonomousError`` and carries its
own exit code (``hartonomous.errors``); this module adds the command-line usage error and the
one-line reason for a database error nobody anticipated.
"""

from __future__ import annotations

from hartonomous.errors import UsageError


class CommandUsageError(UsageError, ValueError):
    """An argument or option the command cannot run with (exit 2); the message says which."""


# lock_not_available (lock_timeout) and query_canceled (statement_timeout): PostgreSQL's message
# ("canceling statement due to lock timeout") names neither the table nor the statement.
_TIMEOUT_SQLSTATES = frozenset({"55P03", "57014"})
_STATEMENT_SHOWN = 120


def database_error_reason(failure: Exception) -> str:
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
