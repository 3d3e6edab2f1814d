"""Service heartbeats: a background service records, from its own loop, that it is alive.

Each instance of a service (the CES consumer, the sync worker) upserts its row of
``service_heartbeats`` (``service_name``, ``instance`` = ``host:pid``) with its state, detail,
the database's ``now()`` and its heartbeat session (``backend_pid``, ``backend_start``) when the
state or detail changes or the session is new. A beat that changes nothing writes nothing: it
runs ``SELECT 1`` on that session, whose ``query_start`` readers take as the beat
(``db.tables.beat_seen_at``), so an idle system writes no WAL (with ``archive_timeout`` every
write would archive a 16 MiB segment). `/health/ready` reads them (docs/operations.md,
"Heartbeats and readiness"). The beat is called from the service's loop, not from a timer
thread, so a loop that is stuck stops beating and readiness sees it. Beats are throttled to one
per ``[health] heartbeat_interval_seconds``; a change of state is written at once.

Writing a beat never raises: a database that cannot be reached is logged and retried on the
next beat (the service outlives it; readiness reports the silence).
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any, Literal

import psycopg
import structlog

from hartonomous.config import Settings
from hartonomous.config.sections import ServiceName
from hartonomous.db.connection import connect
from hartonomous.messaging.spans import untraced

__all__ = ["Heartbeat", "ServiceName", "ServiceState"]

log = structlog.get_logger(__name__)

# starting: before the loop serves; running: the loop serves; failing: the loop turns but its
# last step failed (detail says why); standby: waiting to take over from another instance (the
# CES slot's single consumer); paused: the loop turns but holds off on the operator's `sync
# pause`; stopped / failed: the loop ended (failed: detail says why).
ServiceState = Literal["starting", "running", "failing", "standby", "paused", "stopped", "failed"]
_DETAIL_CHARACTERS = 1000

_UPSERT = """
INSERT INTO service_heartbeats
  (service_name, instance, host, pid, state, detail, backend_pid, backend_start)
SELECT %(service)s, %(instance)s, %(host)s, %(pid)s, %(state)s, %(detail)s, pid, backend_start
FROM pg_stat_activity WHERE pid = pg_backend_pid()
ON CONFLICT (service_name, instance) DO UPDATE SET
  state = EXCLUDED.state, detail = EXCLUDED.detail, last_beat_at = now(),
  backend_pid = EXCLUDED.backend_pid, backend_start = EXCLUDED.backend_start,
  started_at = CASE WHEN EXCLUDED.state = 'starting' THEN now()
                    ELSE service_heartbeats.started_at END
"""
# A beat that changes nothing: the session's `query_start` moves, no row (and no WAL) does.
_PULSE = "SELECT 1"


class Heartbeat:
    """The heartbeat of one service instance, written on its own short-lived session."""

    def __init__(self, url: str, settings: Settings, service: ServiceName) -> None:
        self.service = service
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.instance = f"{self.host}:{self.pid}"
        self._url = url
        self._settings = settings
        self._interval = settings.health.heartbeat_interval_seconds
        self._last: tuple[ServiceState, float] | None = None
        # What the row holds, as this session wrote it (None: write the row on the next beat).
        self._written: tuple[ServiceState, str | None] | None = None
        self._connection: psycopg.Connection[Any] | None = None

    def beat(self, state: ServiceState = "running", detail: str | None = None) -> None:
        """Record ``state`` now if it changed or the last beat is an interval old."""
        now = time.monotonic()
        if (
            self._last is not None
            and self._last[0] == state
            and now - self._last[1] < self._interval
        ):
            return
        try:
            # A beat is bookkeeping, not work: untraced (an idle service would export a trace
            # per interval otherwise).
            with untraced():
                self._write(state, detail)
        except psycopg.Error as exc:
            self._drop_connection()
            log.warning("heartbeat_failed", service=self.service, error=str(exc).splitlines()[0])
            return
        self._last = (state, now)

    def end(self, state: Literal["stopped", "failed"], detail: str | None = None) -> None:
        """Record that the loop ended (``failed``: with the reason), then close the session."""
        self._last = None
        self.beat(state, detail)
        self.end_session()

    def end_session(self) -> None:
        """Close the database session (the next beat opens a new one)."""
        self._drop_connection()

    def _write(self, state: ServiceState, detail: str | None) -> None:
        if self._connection is None or self._connection.closed:
            self._written = None
            self._connection = connect(
                self._url,
                self._settings.database,
                application_name=f"hartonomous-heartbeat-{self.service}",
            )
        detail = None if detail is None else detail[:_DETAIL_CHARACTERS]
        if self._written == (state, detail):
            self._connection.execute(_PULSE)
            return
        self._connection.execute(
            _UPSERT,
            {
                "service": self.service,
                "instance": self.instance,
                "host": self.host,
                "pid": self.pid,
                "state": state,
                "detail": detail,
            },
        )
        self._written = (state, detail)

    def _drop_connection(self) -> None:
        self._written = None
        if self._connection is not None:
            self._connection.close()
            self._connection = None
