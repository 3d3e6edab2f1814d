"""Billing periods: which period a usage belongs to, which one it is billed in, and the close
of a period with the checksum of its totals (docs/billing.md, "Monthly close").

A period is a calendar month (UTC), named by its first day. A row is billed in the period of
its event's time; when that period is closed, in the first open period after it, as an
adjustment line whose ``adjusts_period`` names the period the usage belongs to.

Writers of the ledger and the close serialise on one advisory lock: every ledger write takes
it shared (writers never wait for each other), a close takes it exclusive. So a close waits
for the ledger transactions in flight, and a write that starts after a close reads the
closed period (READ COMMITTED: its later statements see the committed close).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import psycopg

from hartonomous.errors import ConflictError, UsageError
from hartonomous.instants import rfc3339
from hartonomous.messaging.broker import UnsettledMessage

Connection = psycopg.Connection[Any]

# `hashtext('hartonomous.billing_periods')` would do as well; a constant keeps it readable in
# pg_locks (classid 0, objid this).
PERIOD_LOCK_KEY = 0x4842_5045  # "HBPE"
_SIX = Decimal("0.000001")


class PeriodNotEndedError(UsageError):
    """A period that has not ended yet cannot be closed."""

    code = "period-not-ended"


class PeriodEventsQueuedError(ConflictError):
    """Events of the period are still queued on the broker: the close would miss them."""

    code = "period-events-queued"


def period_label(period: date) -> str:
    """``YYYY-MM`` with four digits of year (``%Y`` writes year 1 as ``1``)."""
    return f"{period.year:04d}-{period.month:02d}"


def period_of(moment: datetime) -> date:
    """The period (first day of the month, UTC) of an aware ``moment``."""
    utc = moment.astimezone(UTC)
    return date(utc.year, utc.month, 1)


def next_period(period: date) -> date:
    return date(period.year + period.month // 12, period.month % 12 + 1, 1)


def lock_for_writing(connection: Connection) -> frozenset[date]:
    """Take the period lock shared for the current transaction; the closed periods now.

    Call inside the transaction that writes ledger rows, before it writes them."""
    connection.execute("SELECT pg_advisory_xact_lock_shared(%s)", (PERIOD_LOCK_KEY,))
    rows = connection.execute("SELECT billing_period FROM billing_closed_periods").fetchall()
    return frozenset(row[0] for row in rows)


def billing_periods(period: date, closed: frozenset[date]) -> tuple[date, date | None]:
    """(period billed in, period adjusted or None) for usage of ``period``: the period
    itself while open, else the first open period after it, adjusting ``period``."""
    if period not in closed:
        return period, None
    billed = next_period(period)
    while billed in closed:
        billed = next_period(billed)
    return billed, period


@dataclass(frozen=True)
class ClosedPeriod:
    """A closed period: its checksum (SHA-256, hex) over its totals, the rows and cost they
    sum, when it was closed, and whether this call closed it (False: it already was)."""

    period: date
    checksum: str
    row_count: int
    total_cost: Decimal
    closed_at: datetime
    closed_now: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "period": f"{period_label(self.period)}",
            "checksum": self.checksum,
            "rows": self.row_count,
            "total_cost": str(self.total_cost.quantize(_SIX)),
            "closed_at": rfc3339(self.closed_at),
            "closed_now": self.closed_now,
        }


# The totals a checksum covers: every row billed in the period (archived ones included, from
# the rollup), per tenant and operation, in a fixed order.
_TOTALS = """
SELECT tenant_id, operation, sum(row_count), sum(units), sum(total_dcu), sum(total_cost)
FROM billing_usage_rollup WHERE billing_period = %s
GROUP BY tenant_id, operation ORDER BY tenant_id COLLATE "C", operation COLLATE "C"
"""

# Queued events of the period: the event's own `time` (CDC and usage events both carry it, as
# UTC RFC 3339 text), else the time it was queued. Dead letters are not queued.
_QUEUED = """
SELECT count(*) FROM broker_messages
WHERE queue_name = %(queue)s
  AND coalesce(
    CASE WHEN body->>'time' ~ '^\\d{4}-\\d{2}-\\d{2}T' THEN (body->>'time')::timestamptz END,
    enqueued_at) >= %(start)s
  AND coalesce(
    CASE WHEN body->>'time' ~ '^\\d{4}-\\d{2}-\\d{2}T' THEN (body->>'time')::timestamptz END,
    enqueued_at) < %(end)s
"""


_RFC3339_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T")


def _event_time(message: UnsettledMessage) -> datetime:
    """As `_QUEUED` reads it: the event's own `time` when it is RFC 3339, else when it was sent."""
    body = message.body if isinstance(message.body, dict) else {}
    text = body.get("time")
    if isinstance(text, str) and _RFC3339_DATE.match(text):
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return message.enqueued_at
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return message.enqueued_at


def totals_checksum(totals: Iterable[tuple[object, ...]]) -> str:
    """SHA-256 (hex) of the lines ``tenant,operation,rows,units,dcu,cost`` (money with six
    decimals), one per tenant and operation in byte order, each ending in a newline."""
    digest = hashlib.sha256()
    for tenant, operation, rows, units, dcu, cost in totals:
        money = ",".join(str(Decimal(str(value)).quantize(_SIX)) for value in (units, dcu, cost))
        digest.update(f"{tenant},{operation},{int(str(rows))},{money}\n".encode())
    return digest.hexdigest()


def close_period(
    connection: Connection,
    period: date,
    *,
    now: datetime,
    queue: str,
    unsettled: Callable[[], Iterable[UnsettledMessage]] | None = None,
) -> ClosedPeriod:
    """Close ``period`` (autocommit ``connection``; one transaction): idempotent, a closed
    period answers its stored checksum. ``queue`` is the sync worker's broker queue;
    ``unsettled``, on a transport outside the database (Kafka), reads its messages not yet
    settled (`Transport.unsettled`): those of the period count as waiting too.

    Raises ``PeriodNotEndedError`` when the period ends after ``now`` and
    ``PeriodEventsQueuedError`` (naming how many) while events of the period wait on the
    broker; nothing is written then."""
    end = next_period(period)
    if datetime(end.year, end.month, 1, tzinfo=UTC) > now:
        raise PeriodNotEndedError(
            f"period {period_label(period)} has not ended yet: it can be closed from "
            f"{end:%Y-%m-%d} 00:00 UTC"
        )
    next_start = datetime(end.year, end.month, 1, tzinfo=UTC)
    with connection.transaction():
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (PERIOD_LOCK_KEY,))
        stored = connection.execute(
            "SELECT checksum, row_count, total_cost, closed_at FROM billing_closed_periods "
            "WHERE billing_period = %s",
            (period,),
        ).fetchone()
        if stored is not None:
            return ClosedPeriod(period, stored[0], int(stored[1]), stored[2], stored[3], False)
        queued = connection.execute(
            _QUEUED,
            {
                "queue": queue,
                "start": datetime(period.year, period.month, 1, tzinfo=UTC),
                "end": datetime(end.year, end.month, 1, tzinfo=UTC),
            },
        ).fetchone()
        waiting = int(queued[0]) if queued else 0
        if unsettled is not None:
            start, stop = datetime(period.year, period.month, 1, tzinfo=UTC), next_start
            waiting += sum(start <= _event_time(m) < stop for m in unsettled())
        if waiting:
            raise PeriodEventsQueuedError(
                f"period {period_label(period)} cannot close: {waiting} event(s) of it are still "
                "waiting for the sync worker (queued on the broker, or on the Kafka topic behind "
                "the consumer group's offsets); let the sync worker handle them and close again"
            )
        totals = connection.execute(_TOTALS, (period,)).fetchall()
        checksum = totals_checksum(totals)
        row_count = sum(int(row[2]) for row in totals)
        total_cost = sum((Decimal(row[5]) for row in totals), Decimal(0))
        row = connection.execute(
            "INSERT INTO billing_closed_periods (billing_period, checksum, row_count, total_cost) "
            "VALUES (%s, %s, %s, %s) RETURNING closed_at",
            (period, checksum, row_count, total_cost),
        ).fetchone()
        assert row is not None
        return ClosedPeriod(period, checksum, row_count, total_cost, row[0], True)


def closed_periods(connection: Connection) -> list[ClosedPeriod]:
    """Every closed period, oldest first."""
    rows = connection.execute(
        "SELECT billing_period, checksum, row_count, total_cost, closed_at "
        "FROM billing_closed_periods ORDER BY billing_period"
    ).fetchall()
    return [ClosedPeriod(r[0], r[1], int(r[2]), r[3], r[4], False) for r in rows]
