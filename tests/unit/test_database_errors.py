"""Driver errors become HartonomousError kinds with the one-line `database error: …` reason."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors as pg_errors
from sqlalchemy.exc import OperationalError as SqlAlchemyOperationalError

from hartonomous.errors import HartonomousError, OperationFailedError, UnavailableError
from hartonomous.services.database_errors import (
    DatabaseFailedError,
    DatabaseUnavailableError,
    as_hartonomous_error,
    database_errors,
)


def test_a_refused_statement_is_an_operation_failure_with_the_first_line() -> None:
    failure = pg_errors.UndefinedTable('relation "holdings" does not exist\nLINE 1: …')
    wrapped = as_hartonomous_error(failure)
    assert isinstance(wrapped, DatabaseFailedError)
    assert isinstance(wrapped, OperationFailedError)
    assert str(wrapped) == 'database error: relation "holdings" does not exist'
    assert wrapped.exit_code == 1


def test_an_unreachable_server_is_unavailable() -> None:
    failure = psycopg.OperationalError("connection is bad: No such file or directory")
    wrapped = as_hartonomous_error(SqlAlchemyOperationalError("SELECT 1", {}, failure))
    assert isinstance(wrapped, DatabaseUnavailableError)
    assert isinstance(wrapped, UnavailableError)
    assert wrapped.http_status == 503
    assert str(wrapped) == "database error: connection is bad: No such file or directory"


def test_a_lock_timeout_names_the_statement_that_waited() -> None:
    failure = SqlAlchemyOperationalError(
        "UPDATE ingestion_jobs SET status = 'running'   WHERE job_id = %s",
        {},
        pg_errors.LockNotAvailable("canceling statement due to lock timeout"),
    )
    wrapped = as_hartonomous_error(failure)
    assert isinstance(wrapped, DatabaseFailedError)  # the server answered: not unavailable
    assert str(wrapped) == (
        "database error: canceling statement due to lock timeout "
        "(statement: UPDATE ingestion_jobs SET status = 'running' WHERE job_id = %s)"
    )


def test_other_errors_are_left_alone() -> None:
    assert as_hartonomous_error(ValueError("x")) is None
    with pytest.raises(KeyError), database_errors():
        raise KeyError("x")


def test_the_context_manager_raises_the_kind_chained_to_the_driver_error() -> None:
    with pytest.raises(HartonomousError) as raised, database_errors():
        raise pg_errors.QueryCanceled("canceling statement due to statement timeout")
    assert isinstance(raised.value, DatabaseFailedError)
    assert isinstance(raised.value.__cause__, pg_errors.QueryCanceled)


@pytest.mark.parametrize(
    "failure",
    [
        # A fast shutdown ends every session (`pg_ctl restart -m fast`) ...
        pg_errors.AdminShutdown("terminating connection due to administrator command"),
        # ... and a connection made while it stops or starts is refused.
        pg_errors.CannotConnectNow("the database system is shutting down"),
        pg_errors.ConnectionFailure("connection to server was lost"),
    ],
)
def test_a_server_going_away_or_coming_back_is_unavailable(failure: psycopg.Error) -> None:
    wrapped = as_hartonomous_error(SqlAlchemyOperationalError("SELECT 1", {}, failure))
    assert isinstance(wrapped, DatabaseUnavailableError)
    assert wrapped.http_status == 503
    assert str(wrapped) == f"database error: {failure}"
