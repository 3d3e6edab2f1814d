"""Where a receive starts looking in `broker_messages`: the low-water mark (docs/messaging.md).

Completed messages are deleted. While any snapshot older than a deletion is open (a session
idle in transaction, a long report, pg_dump, a replication slot's xmin) the deleted rows can
be neither vacuumed nor marked dead in the indexes, so a scan from the queue's start walks past
every message completed since that snapshot was taken. Each consumer therefore keeps, per
queue, a `LowWaterMark`:

- ``mark``: no message with a lower id exists or can appear again, except
- ``stragglers``: up to ``max_stragglers`` (`STRAGGLERS`) ids below the mark whose rows still
  exist (delayed, claimed or given back messages that the mark has passed).

A receive scans from the mark and looks the stragglers up by id, so it walks only the
messages completed since the last refresh, whatever snapshot is open elsewhere.

Ids are drawn from the table's sequence before the inserting transaction commits, so a row
with a low id can become visible late. The mark therefore passes an id only once no
transaction that may hold it is still running: a refresh reads the sequence's last value,
then the virtual transaction ids of the sessions holding a write lock on the table (an
INSERT takes it before it draws an id); a later refresh, once every one of them has ended,
knows every row up to that value and moves the mark past those that are gone. A session that
wrote to the queue and stays open in its transaction therefore holds the mark where it was
(correctly: its messages may still commit).

Safety net for rows inserted with explicit old ids (outside the broker's contract): every
`FULL_SCAN_SECONDS` the mark restarts from 0, one full walk of the table's index per consumer;
a sequence seen going back (`TRUNCATE ... RESTART IDENTITY`, `setval`) restarts it at once.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

Connection = psycopg.Connection[Any]

# Ids below the mark looked up one by one by every receive; beyond this many the mark stops
# at the first one left over (a receive then walks from there, as without a mark).
STRAGGLERS = 64
# How often a consumer refreshes its mark (up to three short statements, two reads of pg_locks).
REFRESH_SECONDS = 0.2
# How often the mark restarts from 0 (the safety net above).
FULL_SCAN_SECONDS = 300.0

_SEQUENCE = (
    "SELECT coalesce(pg_sequence_last_value("
    "pg_get_serial_sequence('broker_messages', 'message_id')::regclass), 0), "
    "NOT EXISTS (SELECT FROM pg_locks WHERE virtualtransaction = ANY(%(writers)s))"
)
# The transactions that may hold ids drawn so far: every holder of a write lock on the table
# (a prepared transaction's locks keep its virtual transaction id, "-1/<xid>", too).
_WRITERS = (
    "SELECT ARRAY(SELECT DISTINCT virtualtransaction FROM pg_locks "
    "WHERE locktype = 'relation' AND relation = 'broker_messages'::regclass "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND mode = 'RowExclusiveLock' AND pid IS DISTINCT FROM pg_backend_pid())"
)
# The rows left at or below `upto`, in id order: the stragglers still there, then the lowest
# ids from the mark on (through the two partial indexes that together hold every row).
_LIVE = """
SELECT ARRAY(
    SELECT message_id FROM (
        SELECT message_id FROM broker_messages
        WHERE message_id = ANY(%(stragglers)s) AND queue_name = %(queue)s
        UNION ALL
        (SELECT message_id FROM broker_messages
         WHERE queue_name = %(queue)s AND locked_by IS NULL
           AND message_id >= %(mark)s AND message_id <= %(upto)s
         ORDER BY message_id LIMIT %(limit)s)
        UNION ALL
        (SELECT message_id FROM broker_messages
         WHERE queue_name = %(queue)s AND locked_by IS NOT NULL
           AND message_id >= %(mark)s AND message_id <= %(upto)s
         ORDER BY message_id LIMIT %(limit)s)
    ) AS live
    ORDER BY message_id LIMIT %(limit)s)
"""


@dataclass(frozen=True)
class _Pending:
    """The sequence's last value at one refresh and the writers that may hold ids up to it."""

    last_id: int
    writers: list[str]


@dataclass
class LowWaterMark:
    """One consumer's mark for one queue (`broker_messages.queue_name`)."""

    queue_name: str
    mark: int = 0
    stragglers: tuple[int, ...] = ()
    refresh_seconds: float = REFRESH_SECONDS
    max_stragglers: int = STRAGGLERS
    _pending: _Pending | None = field(default=None, repr=False)
    _refreshed_at: float = field(default=float("-inf"), repr=False)
    _restarted_at: float = field(default_factory=time.monotonic, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def bounds(self, connection: Connection) -> tuple[int, list[int]]:
        """(mark, stragglers) for a receive on ``connection``, refreshed first when
        ``refresh_seconds`` passed. The refresh runs only on an autocommit session outside a
        transaction, where each statement sees what committed before it."""
        with self._lock:
            now = time.monotonic()
            if (
                now - self._refreshed_at >= self.refresh_seconds
                and connection.autocommit
                and connection.info.transaction_status == TransactionStatus.IDLE
            ):
                self._refreshed_at = now
                if now - self._restarted_at >= FULL_SCAN_SECONDS:
                    self.restart(now)
                self._refresh(connection, now)
            return self.mark, list(self.stragglers)

    def restart(self, now: float | None = None) -> None:
        """Scan from the queue's start again (the safety net; a restarted sequence)."""
        self.mark, self.stragglers = 0, ()
        self._restarted_at = time.monotonic() if now is None else now

    def _refresh(self, connection: Connection, now: float) -> None:
        pending = self._pending
        row = connection.execute(
            _SEQUENCE, {"writers": [] if pending is None else pending.writers}
        ).fetchone()
        assert row is not None
        last_id, settled = int(row[0]), bool(row[1])
        if last_id < self.mark - 1 or (pending is not None and last_id < pending.last_id):
            # The sequence went back: ids below the mark may be drawn again.
            self.restart(now)
            pending, settled = None, False
        if pending is not None and settled:
            # Every transaction that may have held an id <= pending.last_id has ended, and this
            # statement's snapshot was taken after that was seen.
            self._advance(connection, pending.last_id)
        if pending is None or settled:
            # Read after the sequence: a transaction drawing an id up to `last_id` already holds
            # its lock (or has committed, and the next refresh sees its rows).
            writers = connection.execute(_WRITERS).fetchone()
            assert writers is not None
            self._pending = _Pending(last_id, list(writers[0]))

    def _advance(self, connection: Connection, upto: int) -> None:
        row = connection.execute(
            _LIVE,
            {
                "queue": self.queue_name,
                "stragglers": list(self.stragglers),
                "mark": self.mark,
                "upto": upto,
                "limit": self.max_stragglers + 1,
            },
        ).fetchone()
        assert row is not None
        live = [int(message_id) for message_id in row[0]]
        if len(live) <= self.max_stragglers:
            # Every row up to `upto` is listed: the mark moves past them all.
            self.stragglers = tuple(live)
            self.mark = max(self.mark, upto + 1)
        else:
            self.stragglers = tuple(live[: self.max_stragglers])
            self.mark = max(self.mark, live[self.max_stragglers])
