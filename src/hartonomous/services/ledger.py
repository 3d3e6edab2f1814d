"""The usage ledger, read: billed events newest first, filtered, with cursor pagination.

One entry per billed event (docs/billing.md). Money (``units`` … ``total_cost``) is exact:
``Decimal`` from NUMERIC(18,6), written as decimal strings over HTTP (docs/api.md, "Ledger").
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Text, cast, select, tuple_

from hartonomous.billing.report import ReportGrouping, UsageReport, usage_report
from hartonomous.db.tables import billing_usage_ledger as ledger
from hartonomous.errors import InvalidCursorError, UsageError
from hartonomous.json_types import exact_loads
from hartonomous.security.tenants import get_tenant
from hartonomous.services.database_errors import database_errors
from hartonomous.services.pagination import Page, cursor_codec
from hartonomous.services.platform import Platform

__all__ = [
    "LedgerEntry",
    "LedgerFilter",
    "ReportGrouping",
    "UsageReport",
    "iter_ledger_entries",
    "ledger_report",
    "list_ledger_entries",
]

EXPORT_BATCH_ROWS = 1000

_LISTING = "ledger-entries"


class LedgerEntry(BaseModel):
    """One billed event; the money columns as docs/billing.md defines them."""

    tenant_id: str
    ledger_id: uuid.UUID
    event_id: str
    principal_id: str | None
    operation: str
    message_type: str
    handler: str
    units: Decimal
    base_rate: Decimal
    multiplier: Decimal
    total_dcu: Decimal
    unit_price: Decimal
    total_cost: Decimal
    rate_plan_id: uuid.UUID | None
    # Read exactly (Decimal, not float: a unit price in it is money); JSON gives its numbers
    # as decimal strings like the columns above.
    metadata: dict[str, Any]
    recorded_at: datetime
    # The month billed in (its first day) and, on an adjustment line, the closed month the
    # usage belongs to (docs/billing.md, "Monthly close").
    billing_period: date
    adjusts_period: date | None


class LedgerFilter(BaseModel):
    """Which entries: ``tenant_id`` None means every tenant (an admin's listing).

    ``recorded_since`` is inclusive, ``recorded_before`` exclusive; both need a UTC offset.
    """

    tenant_id: str | None = None
    principal_id: str | None = None
    operation: str | None = None
    message_type: str | None = None
    recorded_since: datetime | None = None
    recorded_before: datetime | None = None


def list_ledger_entries(
    platform: Platform,
    where: LedgerFilter,
    *,
    limit: int = 50,
    cursor: str | None = None,
    across_tenants: bool = False,
) -> Page[LedgerEntry]:
    """Entries matching ``where``, newest first (``recorded_at``, then ``ledger_id``).

    ``across_tenants`` (an admin's listing) reads on ``platform.maintenance_engine``, which
    sees every tenant; otherwise on ``platform.engine``, bound to the caller's tenant.

    ``UsageError`` naming the field for a time without offset or an empty range;
    ``InvalidCursorError`` for a cursor not issued for this listing, tenant scope and filters;
    across tenants, ``UnknownTenantError`` (404) for a ``tenant_id`` there is none of (as
    ``ledger_report``: an unknown tenant is named, not answered with an empty page).
    """
    _check_times(where)
    codec = cursor_codec(platform.engine)
    query = _entries_query(where)
    if cursor is not None:
        recorded_at, ledger_id = _position(
            codec.decode(_LISTING, where.tenant_id, cursor, filters=where.model_dump())
        )
        query = query.where(
            tuple_(ledger.c.recorded_at, ledger.c.ledger_id) < tuple_(recorded_at, ledger_id)
        )
    query = query.order_by(ledger.c.recorded_at.desc(), ledger.c.ledger_id.desc()).limit(limit + 1)
    engine = platform.maintenance_engine if across_tenants else platform.engine
    with database_errors(), engine.connect() as connection:
        if where.tenant_id is not None and across_tenants:
            get_tenant(connection, where.tenant_id)
        rows = connection.execute(query).mappings().all()
    items = [_entry(row) for row in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = items[-1]
        next_cursor = codec.encode(
            _LISTING,
            where.tenant_id,
            [last.recorded_at.isoformat(), str(last.ledger_id)],
            filters=where.model_dump(),
        )
    return Page(items, next_cursor)


def iter_ledger_entries(platform: Platform, where: LedgerFilter) -> Iterator[LedgerEntry]:
    """Every entry matching ``where``, oldest first (``recorded_at``, then ``ledger_id``), read
    ``EXPORT_BATCH_ROWS`` at a time from a server-side cursor: what an export streams, in one
    snapshot, never the whole range in memory. Read on ``platform.engine`` (the caller's
    tenant under row-level security). The connection is held while the iterator runs.

    ``UsageError`` as ``list_ledger_entries`` (checked before the first entry)."""
    _check_times(where)
    query = _entries_query(where).order_by(ledger.c.recorded_at, ledger.c.ledger_id)
    return _streamed(platform, query)


def _streamed(platform: Platform, query: Any) -> Iterator[LedgerEntry]:
    with (
        database_errors(),
        platform.engine.connect().execution_options(
            isolation_level="REPEATABLE READ", yield_per=EXPORT_BATCH_ROWS
        ) as connection,
        connection.begin(),
    ):
        for row in connection.execute(query).mappings():
            yield _entry(row)


def _entries_query(where: LedgerFilter) -> Any:
    # metadata as text, parsed exactly: the driver's own jsonb reading would make floats.
    query = select(
        *(column for column in ledger.c if column.name != "metadata"),
        cast(ledger.c.metadata, Text).label("metadata"),
    )
    for condition in _conditions(where):
        query = query.where(condition)
    return query


def _entry(row: Any) -> LedgerEntry:
    return LedgerEntry.model_validate({**row, "metadata": exact_loads(row["metadata"])})


def _conditions(where: LedgerFilter) -> list[Any]:
    conditions: list[Any] = []
    for column, value in (
        (ledger.c.tenant_id, where.tenant_id),
        (ledger.c.principal_id, where.principal_id),
        (ledger.c.operation, where.operation),
        (ledger.c.message_type, where.message_type),
    ):
        if value is not None:
            conditions.append(column == value)
    if where.recorded_since is not None:
        conditions.append(ledger.c.recorded_at >= where.recorded_since)
    if where.recorded_before is not None:
        conditions.append(ledger.c.recorded_at < where.recorded_before)
    return conditions


def _check_times(where: LedgerFilter) -> None:
    for name in ("recorded_since", "recorded_before"):
        moment = getattr(where, name)
        if moment is not None and moment.tzinfo is None:
            raise UsageError(f"{name} {moment.isoformat()!r} needs a UTC offset (e.g. +00:00)")
    if (
        where.recorded_since is not None
        and where.recorded_before is not None
        and where.recorded_since >= where.recorded_before
    ):
        raise UsageError("recorded_since must be before recorded_before")


def _position(position: list[Any]) -> tuple[datetime, uuid.UUID]:
    try:
        recorded_at, ledger_id = position
        return datetime.fromisoformat(recorded_at), uuid.UUID(ledger_id)
    except (TypeError, ValueError):
        raise InvalidCursorError("cursor holds no ledger position") from None


def ledger_report(
    platform: Platform,
    *,
    since: date,
    until: date,
    group_by: Sequence[ReportGrouping],
    tenant_id: str | None,
    across_tenants: bool = False,
) -> UsageReport:
    """Billed totals from ``since`` to ``until`` (exclusive) grouped by ``group_by``, from the
    rollup (docs/billing.md, "Reports"). ``across_tenants`` (an admin's or the CLI's report)
    reads on the maintenance engine; otherwise ``platform.engine``, bound to the caller's
    tenant. Raises ``UsageError`` for an empty range or a repeated grouping."""
    engine = platform.maintenance_engine if across_tenants else platform.engine
    with database_errors(), engine.connect() as connection:
        if tenant_id is not None and across_tenants:
            get_tenant(connection, tenant_id)  # an unknown tenant is named, not an empty report
        return usage_report(
            connection, since=since, until=until, group_by=group_by, tenant_id=tenant_id
        )
