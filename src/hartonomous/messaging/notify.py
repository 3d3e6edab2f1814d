"""Waiting for the broker's NOTIFY, as idle consumers (the pump, the sync worker) do."""

from __future__ import annotations

import threading
from typing import Any, TypeVar

import psycopg

from hartonomous.config.sections import DatabaseSettings
from hartonomous.db.connection import connect

_SLICE_SECONDS = 0.25
ConnectionT = TypeVar("ConnectionT", bound="psycopg.Connection[Any]")


def listening_connection(
    connection_class: type[ConnectionT],
    url: str,
    channel: str,
    application_name: str,
    database: DatabaseSettings,
) -> ConnectionT:
    """An autocommit session LISTENing on the broker's channel, as every idle consumer needs,
    with `[database]`'s timeouts (`db.connection.connect`)."""
    connection = connect(
        url, database, application_name=application_name, connection_class=connection_class
    )
    connection.execute(f'LISTEN "{channel}"')
    return connection


def wait_for_notify(
    connection: psycopg.Connection[Any], seconds: float, stop: threading.Event
) -> bool:
    """Return when a notification arrives, `seconds` pass or `stop` is set.

    Waits in short slices so a stop request is honoured promptly even without traffic. Returns
    False when the connection failed (the caller drops it and reconnects).
    """
    remaining = seconds
    while remaining > 0 and not stop.is_set():
        step = min(_SLICE_SECONDS, remaining)
        try:
            for _ in connection.notifies(timeout=step, stop_after=1):
                return True
        except psycopg.Error:
            return False
        remaining -= step
    return True
