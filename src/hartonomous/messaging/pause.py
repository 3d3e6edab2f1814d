"""The operator's sync pause: one flag in the database that every sync process honours.

`hartonomous sync pause` sets the single row of ``sync_control``; the CES consumer and the
sync worker read it on every turn of their loops (whichever process runs them: `up`'s threads,
`ces-consumer`, `sync`) and, while it is set, do no work and beat ``paused``. A batch already in
its transaction finishes; the next one waits. `sync resume` clears the flag and notifies the
broker's channel so an idle worker wakes at once (docs/operations.md, "Pausing sync").
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from hartonomous.errors import ConflictError
from hartonomous.messaging.heartbeat import Heartbeat

__all__ = ["SyncPause", "SyncPausedError", "held_by_pause", "read_pause", "set_pause"]

# How often a paused loop looks at the flag again (one single-row read).
PAUSED_POLL_SECONDS = 1.0


@dataclass(frozen=True)
class SyncPause:
    """``paused``; when paused, since when (database clock), by whom and why."""

    paused: bool
    paused_at: datetime | None = None
    paused_by: str | None = None
    reason: str | None = None

    def describe(self) -> str:
        if not self.paused:
            return "sync running"
        by = f" by {self.paused_by}" if self.paused_by else ""
        why = f": {self.reason}" if self.reason else ""
        return f"sync paused{by} since {self.paused_at}{why}"


class SyncPausedError(ConflictError):
    """A one-off sync run (`sync --once`, `ces-consumer --once`) was asked while paused."""

    code = "sync-paused"
    title = "Sync paused"


def read_pause(connection: psycopg.Connection[Any]) -> SyncPause:
    """The flag as stored (a missing row, before migration 0031's seed, reads as running)."""
    with connection.cursor(row_factory=dict_row) as cursor:
        row = cursor.execute(
            "SELECT paused, paused_at, paused_by, reason FROM sync_control WHERE scope = 'sync'"
        ).fetchone()
    return SyncPause(**row) if row else SyncPause(False)


def set_pause(
    connection: psycopg.Connection[Any],
    paused: bool,
    *,
    by: str | None = None,
    reason: str | None = None,
    channel: str | None = None,
) -> tuple[SyncPause, bool]:
    """Pause or resume; returns the new state and whether it changed.

    Pausing an already paused sync keeps its first ``paused_at``, ``paused_by`` and
    ``reason``. Resuming sends NOTIFY on ``channel`` (the broker's) so idle workers wake.
    """
    with connection.transaction(), connection.cursor(row_factory=dict_row) as cursor:
        before = cursor.execute(
            "SELECT paused FROM sync_control WHERE scope = 'sync' FOR UPDATE"
        ).fetchone()
        changed = before is None or bool(before["paused"]) != paused
        if changed:
            cursor.execute(
                """
                INSERT INTO sync_control (scope, paused, paused_at, paused_by, reason, updated_at)
                VALUES ('sync', %(paused)s, CASE WHEN %(paused)s THEN now() END,
                        %(by)s, %(reason)s, now())
                ON CONFLICT (scope) DO UPDATE SET
                  paused = EXCLUDED.paused, paused_at = EXCLUDED.paused_at,
                  paused_by = EXCLUDED.paused_by, reason = EXCLUDED.reason, updated_at = now()
                """,
                {
                    "paused": paused,
                    "by": by if paused else None,
                    "reason": reason if paused else None,
                },
            )
            if not paused and channel is not None:
                cursor.execute("SELECT pg_notify(%s, 'resume')", (channel,))
    return read_pause(connection), changed


def held_by_pause(
    connection: psycopg.Connection[Any],
    beat: Heartbeat,
    stop: threading.Event,
    hold: Callable[[float], None] | None = None,
) -> bool:
    """One turn of a sync loop: when paused, beat ``paused``, wait a little and return True
    (the loop skips its work this turn); otherwise return False at once. ``hold(seconds)``
    waits instead of ``stop.wait`` (a Kafka consumer keeps polling its group meanwhile:
    `Transport.hold`)."""
    pause = read_pause(connection)
    if not pause.paused:
        return False
    beat.beat("paused", pause.describe())
    if hold is None:
        stop.wait(PAUSED_POLL_SECONDS)
    else:
        hold(PAUSED_POLL_SECONDS)
    return True
