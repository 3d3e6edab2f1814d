"""Driver sessions for maintenance services on psycopg-level domain code (broker, CDC, graph).

They run on ``platform.maintenance_engine``: the broker and dead letters hold every tenant's
events, which the API role may not read (docs/security.md, "Isolation").
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from hartonomous.db.connection import connect
from hartonomous.messaging.broker import psycopg_connection
from hartonomous.services.database_errors import database_errors
from hartonomous.services.platform import Platform

__all__ = ["database_url", "dedicated_session", "driver_session"]


@contextmanager
def driver_session(platform: Platform) -> Iterator[psycopg.Connection[Any]]:
    """A pooled psycopg session in autocommit mode (the code under it opens its transactions).

    Driver errors raised inside become ``DatabaseFailedError`` / ``DatabaseUnavailableError``
    (``services.database_errors``). The pool restores the isolation level on return.
    """
    with database_errors(), platform.maintenance_engine.connect() as connection:
        autocommit = connection.execution_options(isolation_level="AUTOCOMMIT")
        yield psycopg_connection(autocommit)


@contextmanager
def dedicated_session(
    platform: Platform, application_name: str
) -> Iterator[psycopg.Connection[Any]]:
    """A session of its own (not pooled) for long maintenance work that changes session state.

    Autocommit, with the configured statement and lock timeouts (``db.connection.connect``);
    driver errors become ``HartonomousError`` kinds as in ``driver_session``.
    """
    url = database_url(platform)
    with (
        database_errors(),
        connect(url, platform.settings.database, application_name=application_name) as connection,
    ):
        yield connection


def database_url(platform: Platform) -> str:
    """The owner's URL with its password, for maintenance components that open their own
    sessions (they see every tenant: docs/security.md, "Isolation")."""
    if platform.database is not None:
        return platform.database.url
    return platform.maintenance_engine.url.render_as_string(hide_password=False)
