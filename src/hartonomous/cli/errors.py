"""Exceptions whose message is the whole story for an operator (no traceback).

Exit codes (README): 0 success, 1 the work failed, 2 the command line asked for something that
cannot run as given (a usage error: bad argument or option value, missing confirmation, bad
configuration).
"""

from __future__ import annotations


class CommandUsageError(ValueError):
    """An argument or option the command cannot run with (exit 2); the message says which."""


def usage_errors() -> tuple[type[Exception], ...]:
    """The user-facing errors that mean "usage error" (exit 2) rather than "failed" (exit 1)."""
    from hartonomous.config import ConfigError
    from hartonomous.embed.spaces import UnknownSpaceError
    from hartonomous.search.service import SearchError
    from hartonomous.search.similar import UnknownPolicyError
    from hartonomous.security.principals import InvalidPrincipalError
    from hartonomous.security.tenants import InvalidTenantError

    return (
        CommandUsageError,
        InvalidPrincipalError,
        ConfigError,
        InvalidTenantError,
        SearchError,
        UnknownPolicyError,
        UnknownSpaceError,
    )


def user_facing_errors() -> tuple[type[Exception], ...]:
    from hartonomous.atoms.holdings import HoldingNotFoundError
    from hartonomous.atoms.read import AtomNotFoundError, NotCompositeError
    from hartonomous.cdc.replication import SlotInOtherDatabaseError
    from hartonomous.cli.atoms_commands import AtomIdError
    from hartonomous.cli.broker_commands import BrokerCommandError
    from hartonomous.cli.db_commands import SeedSamplesFailedError, UnknownRevisionError
    from hartonomous.cli.main import CommandFailedError
    from hartonomous.cli.models_commands import ModelNotFoundError
    from hartonomous.cli.search_commands import EmbedCommandError
    from hartonomous.cli.sync_commands import GraphCommandError
    from hartonomous.cli.up_command import PortUnavailableError
    from hartonomous.config import ConfigError
    from hartonomous.db import (
        DatabaseUnavailableError,
        EmbeddedDatabaseError,
        SchemaNotCurrentError,
    )
    from hartonomous.embed.spaces import UnknownSpaceError
    from hartonomous.ops.instance import InstanceBusyError
    from hartonomous.ops.sample_content import SampleModelMissingError
    from hartonomous.search.service import SearchError
    from hartonomous.search.similar import UnknownPolicyError
    from hartonomous.security.principals import InvalidPrincipalError
    from hartonomous.security.tenants import TenantError
    from hartonomous.sync.worker import SyncStoppedError

    return (
        CommandUsageError,
        InvalidPrincipalError,
        EmbedCommandError,
        SearchError,
        UnknownPolicyError,
        UnknownSpaceError,
        AtomIdError,
        AtomNotFoundError,
        BrokerCommandError,
        HoldingNotFoundError,
        ModelNotFoundError,
        GraphCommandError,
        SyncStoppedError,
        NotCompositeError,
        TenantError,
        CommandFailedError,
        ConfigError,
        DatabaseUnavailableError,
        EmbeddedDatabaseError,
        SchemaNotCurrentError,
        InstanceBusyError,
        PortUnavailableError,
        SampleModelMissingError,
        SeedSamplesFailedError,
        SlotInOtherDatabaseError,
        UnknownRevisionError,
    )


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
