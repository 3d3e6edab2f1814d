"""Throttle counters in PostgreSQL, shared by every worker process (docs/security.md, "Throttle").

One short transaction per evaluation on the store's own connection: lock the key rows in key
order (inserting missing ones first, so two evaluations cannot both believe a key is new), run
the pure `apply_steps`, write back every state it returns. No rate-limit library fits here:
the throttle's semantics (fixed windows, shared keys across rules, roll back on deny) are the
original's, already pure in `throttle.apply_steps`; what was missing is only this storage.

Permits are counted when granted, on the store's connection, so other processes see them at
once. Work they allow may still roll back (a sync batch whose Neo4j projection fails): inside
`provisional()` the store remembers the permits it grants and takes them back if the block
raises. A process killed in between keeps its permits until their window ends (fail closed).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
import structlog
from sqlalchemy import Engine

from hartonomous.config.sections import DatabaseSettings
from hartonomous.db.connection import connect
from hartonomous.messaging.broker import psycopg_connection
from hartonomous.security.throttle import (
    CounterKey,
    ThrottleDecision,
    ThrottleStep,
    WindowState,
    apply_steps,
)

Connection = psycopg.Connection[Any]
log = structlog.get_logger(__name__)


def _columns(key: CounterKey) -> tuple[str, str, str]:
    """A key's row: (subject, subject_id, operation). A principal's or key's `subject_id`
    column is ``tenant/id`` (a tenant id cannot contain '/'), so each tenant has its own."""
    if key.subject == "tenant":
        return key.subject, key.subject_id, key.operation or ""
    return key.subject, f"{key.tenant_id}/{key.subject_id}", key.operation or ""


@dataclass(frozen=True)
class Permit:
    """`count` increments granted on `key` in the window that started at `window_start`."""

    key: CounterKey
    window_start: datetime
    count: int


class PostgresCounterStore:
    """A `CounterStore` on `security_throttle_counters`, safe across processes."""

    def __init__(self, url: str, database: DatabaseSettings) -> None:
        self._url = url
        self._database = database
        self._lock = threading.Lock()
        self._connection: Connection | None = None
        # Permits granted inside each open `provisional()` block, innermost last.
        self._provisional: list[list[Permit]] = []

    def _connect(self) -> Connection:
        if self._connection is None or self._connection.closed:
            self._connection = connect(
                self._url, self._database, application_name="hartonomous-throttle"
            )
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    @contextmanager
    def provisional(self) -> Iterator[None]:
        """Refund the permits granted inside the block if it raises (blocks may nest: a block
        that ends normally hands its permits to the enclosing one)."""
        with self._lock:
            self._provisional.append([])
        try:
            yield
        except BaseException:
            with self._lock:
                permits = self._provisional.pop()
            self.refund(permits)
            raise
        with self._lock:
            permits = self._provisional.pop()
            if self._provisional:
                self._provisional[-1].extend(permits)

    def acquire(self, steps: Sequence[ThrottleStep], now: datetime) -> ThrottleDecision:
        keys = sorted({step.key for step in steps}, key=_columns)
        with self._lock:
            try:
                decision, states = self._acquire(keys, steps, now)
            except psycopg.OperationalError:
                self.close()  # a broken session must not be reused; the caller retries
                raise
            if not decision.is_throttled and self._provisional:
                # Allowed: every step incremented its key once (a key of two rules twice).
                granted = Counter(step.key for step in steps)
                self._provisional[-1].extend(
                    Permit(key, states[key].window_start, n) for key, n in granted.items()
                )
        return decision

    def refund(self, permits: Sequence[Permit]) -> None:
        """Take granted permits back; a counter whose window restarted since is left alone.
        Best effort: on a database error the permits expire with their window instead."""
        owed: Counter[tuple[str, str, str, datetime]] = Counter()
        for permit in permits:
            owed[(*_columns(permit.key), permit.window_start)] += permit.count
        if not owed:
            return
        rows = sorted(owed)
        with self._lock:
            try:
                connection = self._connect()
                with connection.transaction():
                    # Lock in key order first, as `acquire` does: no deadlock between them.
                    connection.execute(
                        "SELECT 1 FROM security_throttle_counters "
                        "WHERE (subject, subject_id, operation) IN "
                        "(SELECT * FROM unnest(%s::text[], %s::text[], %s::text[])) "
                        "ORDER BY subject, subject_id, operation FOR UPDATE",
                        ([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]),
                    )
                    connection.execute(
                        "UPDATE security_throttle_counters c "
                        "SET count = greatest(c.count - u.n, 0) "
                        "FROM unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[], "
                        "%s::int[]) AS u(s, i, o, w, n) WHERE (c.subject, c.subject_id, "
                        "c.operation, c.window_start) = (u.s, u.i, u.o, u.w)",
                        (
                            [r[0] for r in rows],
                            [r[1] for r in rows],
                            [r[2] for r in rows],
                            [r[3] for r in rows],
                            [owed[r] for r in rows],
                        ),
                    )
            except psycopg.Error as exc:
                if isinstance(exc, psycopg.OperationalError):
                    self.close()
                log.warning("throttle_refund_failed", error=str(exc), permits=sum(owed.values()))

    def _acquire(
        self, keys: list[CounterKey], steps: Sequence[ThrottleStep], now: datetime
    ) -> tuple[ThrottleDecision, dict[CounterKey, WindowState]]:
        connection = self._connect()
        with connection.transaction():
            return acquire_in(connection, keys, steps, now)

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


def acquire_in(
    connection: Connection, keys: list[CounterKey], steps: Sequence[ThrottleStep], now: datetime
) -> tuple[ThrottleDecision, dict[CounterKey, WindowState]]:
    """`CounterStore.acquire` inside the caller's open transaction on ``connection``; ``keys``
    are the steps' keys in `_columns` order. Returns the decision and the states it stored."""
    rows = [_columns(key) for key in keys]
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
    return outcome.decision, outcome.states


LEASE_SHARE = 50
"""A lease is at most 1/LEASE_SHARE of its rule's limit: the permits one process may hold
unused (and so keep from other processes until the window ends) stay a small share."""


@dataclass
class _Lease:
    """Permits of one counter's window taken from the shared count and not yet handed out."""

    window_start: datetime
    counted: int  # the shared count right after the latest lease was taken
    left: int


def _lease_key(step: ThrottleStep) -> tuple[CounterKey, int, timedelta]:
    return step.key, step.permit_limit, step.window


class PooledCounterStore:
    """A `CounterStore` on `security_throttle_counters` through a SQLAlchemy engine's pool.

    For the API: each evaluation borrows a pooled connection for its one short transaction,
    so concurrent requests do not queue behind one connection (`PostgresCounterStore` keeps
    one, for the sync worker's provisional permits). Limits hold across processes alike.

    With one applicable rule, permits are taken from the shared counter in leases of up to
    ``lease_permits`` (and at most 1/`LEASE_SHARE` of the limit): one statement counts the
    whole lease, and the process hands its permits out (``acquire_held``, no I/O) until it is
    spent or its window ends; permits left when the window ends are dropped, never carried
    over. Every permit granted is counted in the shared counter first, so no window grants
    more than the limit whatever the number of processes; what a lease costs is that up to
    lease - 1 counted permits per process may go unused, so other processes can be refused a
    little before the limit is really spent. When the window has no room for a whole lease,
    single permits are taken as without leases.
    """

    def __init__(self, engine: Engine, *, lease_permits: int = 1) -> None:
        if lease_permits < 1:
            raise ValueError(f"lease_permits must be at least 1, not {lease_permits}")
        self._engine = engine
        # One statement needs no transaction around it: no BEGIN and COMMIT round trips.
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._lease_permits = lease_permits
        self._leases_lock = threading.Lock()
        self._leases: dict[tuple[CounterKey, int, timedelta], _Lease] = {}

    def lease_size(self, step: ThrottleStep) -> int:
        """Permits one statement takes for ``step``: ``lease_permits``, at most 1/LEASE_SHARE
        of its limit, at least 1."""
        return max(1, min(self._lease_permits, step.permit_limit // LEASE_SHARE))

    def acquire_held(self, steps: Sequence[ThrottleStep], now: datetime) -> ThrottleDecision | None:
        """A permit from a lease this process holds, without I/O (``acquire``'s decision);
        None when none applies (several rules, no lease, spent, or its window ended)."""
        if len(steps) != 1:
            return None
        step = steps[0]
        with self._leases_lock:
            lease = self._leases.get(_lease_key(step))
            if lease is None or lease.left <= 0 or now - lease.window_start >= step.window:
                return None
            lease.left -= 1
            # Counted by the shared counter but still held here: not used yet.
            used_before = lease.counted - lease.left - 1
            window_start = lease.window_start
        return apply_steps({step.key: WindowState(window_start, used_before)}, [step], now).decision

    def acquire(self, steps: Sequence[ThrottleStep], now: datetime) -> ThrottleDecision:
        if len(steps) == 1 and steps[0].permit_limit > 0:
            held = self.acquire_held(steps, now)
            return held if held is not None else self._acquire_one(steps[0], now)
        keys = sorted({step.key for step in steps}, key=_columns)
        with self._engine.begin() as connection:
            decision, _ = acquire_in(psycopg_connection(connection), keys, steps, now)
        return decision

    def _acquire_one(self, step: ThrottleStep, now: datetime) -> ThrottleDecision:
        """The common case (one rule) in one atomic statement, with `apply_steps`' outcome: a
        counter whose window elapsed restarts at the lease taken, one with room for the lease
        goes up by it, one without is left alone (no row returned); then a single permit is
        tried the same way, and a counter at its limit denies the call."""
        lease = self.lease_size(step)
        row = self._take(step, now, lease) if lease > 1 else None
        if row is not None:
            window_start, counted = row[0], int(row[1])
            with self._leases_lock:
                held = self._leases.get(_lease_key(step))
                left = lease - 1
                if held is not None and held.window_start == window_start:
                    left += held.left  # two leases taken at once: keep both
                self._leases[_lease_key(step)] = _Lease(window_start, counted, left)
            before = WindowState(window_start, counted - left - 1)
            return apply_steps({step.key: before}, [step], now).decision
        row = self._take(step, now, 1)
        if row is None:  # at its limit: read the window the denial waits out
            key = _columns(step.key)
            with self._autocommit.connect() as connection:
                row = (
                    psycopg_connection(connection)
                    .execute(
                        "SELECT window_start, count FROM security_throttle_counters "
                        "WHERE subject = %s AND subject_id = %s AND operation = %s",
                        key,
                    )
                    .fetchone()
                )
            assert row is not None
            decision = apply_steps({step.key: WindowState(row[0], row[1])}, [step], now).decision
            if decision.is_throttled:
                return decision
            # The window restarted in between (another process): count this call afresh.
            return self._acquire_one(step, now)
        # Allowed: the decision `apply_steps` gives for the counter as it was before this call.
        before = WindowState(row[0], int(row[1]) - 1)
        return apply_steps({step.key: before}, [step], now).decision

    def _take(self, step: ThrottleStep, now: datetime, permits: int) -> tuple[Any, ...] | None:
        """Count ``permits`` on ``step``'s counter if its window has room for all of them (a
        window that elapsed restarts with them); the stored (window_start, count), or None
        when there is no room (nothing changed)."""
        key = _columns(step.key)
        with self._autocommit.connect() as connection:
            row: tuple[Any, ...] | None = (
                psycopg_connection(connection)
                .execute(
                    "INSERT INTO security_throttle_counters AS c "
                    "(subject, subject_id, operation, window_start, count) "
                    "SELECT %(s)s, %(i)s, %(o)s, %(now)s, %(n)s FROM "
                    "(SELECT set_config('synchronous_commit', 'off', true)) AS asynchronous_commit "
                    "WHERE %(n)s <= %(limit)s "
                    "ON CONFLICT (subject, subject_id, operation) DO UPDATE SET "
                    "window_start = CASE WHEN %(now)s - c.window_start >= %(window)s "
                    "THEN %(now)s ELSE c.window_start END, "
                    "count = CASE WHEN %(now)s - c.window_start >= %(window)s "
                    "THEN %(n)s ELSE c.count + %(n)s END "
                    "WHERE %(now)s - c.window_start >= %(window)s OR c.count + %(n)s <= %(limit)s "
                    "RETURNING window_start, count",
                    {
                        "s": key[0],
                        "i": key[1],
                        "o": key[2],
                        "now": now,
                        "window": step.window,
                        "limit": step.permit_limit,
                        "n": permits,
                    },
                )
                .fetchone()
            )
        return row
