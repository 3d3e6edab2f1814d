"""Usage reports: billed totals grouped by tenant, principal, operation, day or month, read
from the ledger's rollup (docs/billing.md, "Reports").

The rollup (`billing_usage_rollup`, migration 0026) holds one row per tenant, day (UTC),
billing period, principal and operation, kept by a trigger in the transaction of every ledger
insert, archived rows included; a report therefore never scans the ledger and its totals are
exactly the sums of the rows they cover. Money is ``Decimal`` throughout.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Date, cast, func, select

from hartonomous.billing.periods import period_label
from hartonomous.db.tables import billing_usage_ledger as ledger
from hartonomous.db.tables import billing_usage_rollup as rollup
from hartonomous.errors import UsageError

__all__ = ["Adjustment", "ReportGrouping", "ReportRow", "UsageReport", "usage_report"]


class ReportGrouping(StrEnum):
    TENANT = "tenant"
    PRINCIPAL = "principal"
    OPERATION = "operation"
    DAY = "day"
    MONTH = "month"


_MONEY = ("units", "total_dcu", "total_cost")
_SIX = Decimal("0.000001")


@dataclass(frozen=True)
class ReportRow:
    """One group: its keys (grouping name → value, `principal` '' for none; days and months
    as ISO text) and its totals."""

    keys: dict[str, str]
    row_count: int
    units: Decimal
    total_dcu: Decimal
    total_cost: Decimal

    def as_json(self) -> dict[str, Any]:
        return {
            **self.keys,
            "rows": self.row_count,
            **{name: str(getattr(self, name).quantize(_SIX)) for name in _MONEY},
        }


@dataclass(frozen=True)
class Adjustment:
    """Late usage of a closed period billed in a later one (docs/billing.md, "Monthly close"):
    per billing period, period adjusted, tenant and operation. Already inside the report's
    rows and total; listed so finance sees what they carry for earlier periods."""

    billing_period: date
    adjusts_period: date
    tenant_id: str
    operation: str
    row_count: int
    units: Decimal
    total_dcu: Decimal
    total_cost: Decimal

    def as_json(self) -> dict[str, Any]:
        return {
            "billing_period": period_label(self.billing_period),
            "adjusts_period": period_label(self.adjusts_period),
            "tenant_id": self.tenant_id,
            "operation": self.operation,
            "rows": self.row_count,
            **{name: str(getattr(self, name).quantize(_SIX)) for name in _MONEY},
        }


@dataclass(frozen=True)
class UsageReport:
    since: date
    until: date
    tenant_id: str | None
    group_by: tuple[ReportGrouping, ...]
    rows: tuple[ReportRow, ...]
    total: ReportRow
    adjustments: tuple[Adjustment, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "tenant_id": self.tenant_id,
            "group_by": [grouping.value for grouping in self.group_by],
            "rows": [row.as_json() for row in self.rows],
            "total": self.total.as_json(),
            "adjustments": [adjustment.as_json() for adjustment in self.adjustments],
        }

    def as_csv(self) -> str:
        """The rows with a header (grouping columns, then rows and money), then a `total` row;
        when there are adjustments, an empty line, `adjustments` and their own table."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        names = [grouping.value for grouping in self.group_by]
        writer.writerow([*names, "rows", *_MONEY])
        for row in [*self.rows, self.total]:
            data = row.as_json()
            keys = (
                [data.get(name, "total") for name in names]
                if row is self.total
                else [data[name] for name in names]
            )
            writer.writerow([*keys, data["rows"], *(data[name] for name in _MONEY)])
        if self.adjustments:
            # A second table after an empty line, only when there are adjustments.
            header = ["billing_period", "adjusts_period", "tenant_id", "operation", "rows"]
            writer.writerow([])
            writer.writerow(["adjustments"])
            writer.writerow([*header, *_MONEY])
            for adjustment in self.adjustments:
                line = adjustment.as_json()
                writer.writerow([line[name] for name in [*header, *_MONEY]])
        return out.getvalue()


def _key_column(grouping: ReportGrouping) -> Any:
    match grouping:
        case ReportGrouping.TENANT:
            return rollup.c.tenant_id
        case ReportGrouping.PRINCIPAL:
            return rollup.c.principal_id
        case ReportGrouping.OPERATION:
            return rollup.c.operation
        case ReportGrouping.DAY:
            return rollup.c.day
        case ReportGrouping.MONTH:
            return cast(func.date_trunc("month", rollup.c.day), Date)


def usage_report(
    connection: Connection,
    *,
    since: date,
    until: date,
    group_by: Sequence[ReportGrouping],
    tenant_id: str | None,
) -> UsageReport:
    """Totals of the rows billed from day ``since`` up to (not including) ``until`` (UTC),
    grouped by ``group_by`` in that order (no grouping: one total), every tenant's or
    ``tenant_id``'s.

    Raises ``UsageError`` for an empty or reversed range or a grouping named twice."""
    if until <= since:
        raise UsageError(f"the report's range is empty: until {until} is not after since {since}")
    if len(set(group_by)) != len(group_by):
        raise UsageError("a grouping is named more than once in group_by")
    keys = [_key_column(grouping).label(grouping.value) for grouping in group_by]
    sums = [
        func.sum(rollup.c.row_count).label("row_count"),
        *(func.sum(rollup.c[name]).label(name) for name in _MONEY),
    ]
    query = select(*keys, *sums).where(rollup.c.day >= since, rollup.c.day < until)
    if tenant_id is not None:
        query = query.where(rollup.c.tenant_id == tenant_id)
    if keys:
        query = query.group_by(*keys).order_by(*keys)
    # Per line only what differs: names and converters are worked out once (a report by
    # tenant, principal and operation has a line per rollup key, tens of thousands), and all
    # rows are fetched at once (the driver converts them in one call, not one call a row).
    names = [grouping.value for grouping in group_by]
    dated = [grouping in (ReportGrouping.DAY, ReportGrouping.MONTH) for grouping in group_by]
    lines = []
    for *values, count, units, dcu, cost in connection.execute(query).all():
        if count is None:
            continue  # no grouping and no rows: the one sum is NULL
        key = (
            [
                _text(value) if is_date else value
                for value, is_date in zip(values, dated, strict=True)
            ]
            if any(dated)
            else values
        )
        lines.append(ReportRow(dict(zip(names, key, strict=True)), int(count), units, dcu, cost))
    rows = tuple(lines)
    total = ReportRow(
        {},
        sum(row.row_count for row in rows),
        *(sum((getattr(row, name) for row in rows), Decimal(0)) for name in _MONEY),
    )
    return UsageReport(
        since,
        until,
        tenant_id,
        tuple(group_by),
        rows,
        total,
        _adjustments(connection, since, until, tenant_id),
    )


def _adjustments(
    connection: Connection, since: date, until: date, tenant_id: str | None
) -> tuple[Adjustment, ...]:
    """Adjustment lines recorded on the report's days, from the hot ledger (few rows, found
    through its partial index; archived ones stay in the totals but are not listed)."""
    day = cast(func.timezone("UTC", ledger.c.recorded_at), Date)
    query = (
        select(
            ledger.c.billing_period,
            ledger.c.adjusts_period,
            ledger.c.tenant_id,
            ledger.c.operation,
            func.count().label("row_count"),
            *(func.sum(ledger.c[name]).label(name) for name in _MONEY),
        )
        .where(
            ledger.c.adjusts_period.is_not(None),
            ledger.c.billing_period >= func.date_trunc("month", since),
            ledger.c.billing_period < until,
            day >= since,
            day < until,
        )
        .group_by(ledger.c.billing_period, ledger.c.adjusts_period, ledger.c.tenant_id)
        .group_by(ledger.c.operation)
        .order_by(ledger.c.billing_period, ledger.c.adjusts_period, ledger.c.tenant_id)
        .order_by(ledger.c.operation)
    )
    if tenant_id is not None:
        query = query.where(ledger.c.tenant_id == tenant_id)
    return tuple(
        Adjustment(
            row.billing_period,
            row.adjusts_period,
            row.tenant_id,
            row.operation,
            int(row.row_count),
            row.units,
            row.total_dcu,
            row.total_cost,
        )
        for row in connection.execute(query)
    )


def _text(value: object) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)
