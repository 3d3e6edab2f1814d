"""Throttle counters in PostgreSQL, shared by every worker process (design §8, digest §5).

One short transaction per evaluation on the store's own connection: lock the key rows in key
order (inserting missing ones first, so two evaluations cannot both believe a key is new), run
the pure `apply_steps`, write back every state it returns. No rate-limit library fits here:
the throttle's semantics (fixed windows, shared keys across rules, roll back on deny) are the
original's, already pure in `throttle.apply_steps`; what was missing is only this storage.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg

from hartonomous.security.throttle import (
    CounterKey,
    ThrottleDecision,
    ThrottleStep,
    WindowState,
    apply_steps,
)

Connection = psycopg.Connection[Any]


def _columns(key: CounterKey) -> tuple[str, str, str]:
    return key.subject, key.subject_id, key.operation or ""


class PostgresCounterStore:
    """A `CounterStore` on `security_throttle_counters`, safe across processes."""

    def __init__(self, url: str) -> None:
        self._conninfo = url.replace("postgresql+psycopg://", "postgresql://")
        self._lock = threading.Lock()
        self._connection: Connection | None = None

    def _connect(self) -> Connection:
        if self._connection is None or self._connection.closed:
            self._connection = psycopg.connect(
                self._conninfo, autocommit=True, application_name="hartonomous-throttle"
            )
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def acquire(self, steps: Sequence[ThrottleStep], now: datetime) -> ThrottleDecision:
        keys = sorted({step.key for step in steps}, key=_columns)
        with self._lock:
            try:
                return self._acquire(keys, steps, now)
            except psycopg.OperationalError:
                self.close()  # a broken session must not be reused; the caller retries
                raise

    def _acquire(
        self, keys: list[CounterKey], steps: Sequence[ThrottleStep], now: datetime
    ) -> ThrottleDecision:
        connection = self._connect()
        rows = [_columns(key) for key in keys]
        with connection.transaction():
            connection.execute(
                "INSERT INTO security_throttle_counters "
                "(subject, subject_id, operation, window_start, count) "
                "SELECT s, i, o, %s, 0 FROM unnest(%s::text[], %s::text[], %s::text[]) "
                "AS u(s, i, o) ORDER BY s, i, o ON CONFLICT DO NOTHING",
                (now, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]),
            )
            stored = connection.execute(
                "SELECT subject, subject_id, operation, window_start, count "
                "FROM security_throttle_counters "
                "WHERE (subject, subject_id, operation) IN "
                "(SELECT * FROM unnest(%s::text[], %s::text[], %s::text[])) "
                "ORDER BY subject, subject_id, operation FOR UPDATE",
                ([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]),
            ).fetchall()
            by_columns = {(s, i, o): WindowState(start, count) for s, i, o, start, count in stored}
            states = {key: by_columns[_columns(key)] for key in keys if _columns(key) in by_columns}
            outcome = apply_steps(states, steps, now)
            changed = list(outcome.states.items())
            if changed:
                connection.execute(
                    "UPDATE security_throttle_counters c SET window_start = u.w, count = u.n "
                    "FROM unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[], "
                    "%s::int[]) AS u(s, i, o, w, n) "
                    "WHERE (c.subject, c.subject_id, c.operation) = (u.s, u.i, u.o)",
                    (
                        [_columns(k)[0] for k, _ in changed],
                        [_columns(k)[1] for k, _ in changed],
                        [_columns(k)[2] for k, _ in changed],
                        [state.window_start for _, state in changed],
                        [state.count for _, state in changed],
                    ),
                )
        return outcome.decision

    def count(self, key: CounterKey) -> int:
        """The stored count of `key` (0 when it has no counter)."""
        with self._lock:
            row = (
                self._connect()
                .execute(
                    "SELECT count FROM security_throttle_counters "
                    "WHERE subject = %s AND subject_id = %s AND operation = %s",
                    _columns(key),
                )
                .fetchone()
            )
        return 0 if row is None else int(row[0])
