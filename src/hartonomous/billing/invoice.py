"""Invoice preview: what a tenant owes for one billing period (docs/billing.md, "Invoice preview").

Lines, in this order:

- ``monthly_fee``: the fee of the plan version in force at the period's end;
- ``usage``: one line per operation and the rates it was priced with (plan version, base rate,
  multiplier, price per DCU), summed from the period's ledger rows: units, DCU, cost;
- ``archived_usage``: one line per operation of rows an archive moved out of the ledger (the
  archive keeps totals per operation, not rates);
- ``storage``: GB-month of private and of public holdings beyond the plan's included GB;
- ``seats``: active principals beyond the plan's included seats.

Money is ``Decimal`` throughout and is rounded only at the line: half away from zero to cents
(``billing.numeric.round_half_away``); the total is the sum of the rounded lines. Nothing in the
preview depends on when it is computed, beyond the database's rows, so the same rows give the
same JSON (sorted keys, fixed decimal places) and CSV byte for byte.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection

from hartonomous.billing.numeric import round_half_away
from hartonomous.billing.periods import period_label
from hartonomous.billing.plan_versions import PlanVersion, plan_in_force

__all__ = ["Invoice", "InvoiceLine", "LineKind", "invoice_preview"]

_GIGABYTE = Decimal(10) ** 9  # decimal GB, as storage is sold
_SIX = Decimal("0.000001")
_CENTS = 2


class LineKind(StrEnum):
    MONTHLY_FEE = "monthly_fee"
    USAGE = "usage"
    ARCHIVED_USAGE = "archived_usage"
    STORAGE = "storage"
    SEATS = "seats"


@dataclass(frozen=True)
class InvoiceLine:
    """One line. ``quantity`` is what was used (units, GB-month, seats; 1 for the fee),
    ``included`` what the plan includes of it, ``billable`` the rest; ``unit_price`` is per
    billable unit (per DCU for usage, whose ``amount`` is its rows' cost). ``amount`` is in
    cents; the other figures at 6 places. Fields that do not apply to a kind are None."""

    kind: LineKind
    description: str
    unit: str
    quantity: Decimal
    included: Decimal | None
    billable: Decimal
    unit_price: Decimal
    amount: Decimal
    operation: str | None = None
    plan_code: str | None = None
    plan_effective_from: datetime | None = None
    rate: Decimal | None = None
    multiplier: Decimal | None = None
    dcu: Decimal | None = None

    def as_json(self) -> dict[str, str | None]:
        return {
            "kind": self.kind.value,
            "description": self.description,
            "unit": self.unit,
            "operation": self.operation,
            "plan_code": self.plan_code,
            "plan_effective_from": _moment(self.plan_effective_from),
            "quantity": _six(self.quantity),
            "included": _six(self.included),
            "billable": _six(self.billable),
            "rate": _six(self.rate),
            "multiplier": _six(self.multiplier),
            "dcu": _six(self.dcu),
            "unit_price": _six(self.unit_price),
            "amount": _cents(self.amount),
        }


CSV_COLUMNS = tuple(InvoiceLine.__dataclass_fields__)


@dataclass(frozen=True)
class Invoice:
    tenant_id: str
    period: date
    currency: str
    plan: PlanVersion
    plan_source: str  # "database" or "settings"
    lines: tuple[InvoiceLine, ...]

    @property
    def total(self) -> Decimal:
        return sum((line.amount for line in self.lines), Decimal("0.00"))

    def as_json(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "period": f"{period_label(self.period)}",
            "currency": self.currency,
            "plan": {
                "plan_code": self.plan.plan_code,
                "name": self.plan.name,
                "effective_from": _moment(self.plan.effective_from),
                "source": self.plan_source,
            },
            "lines": [line.as_json() for line in self.lines],
            "total": _cents(self.total),
        }

    def to_json(self) -> str:
        """The preview as JSON text: sorted keys, two-space indent, a final newline."""
        return json.dumps(self.as_json(), sort_keys=True, indent=2, ensure_ascii=False) + "\n"

    def to_csv(self) -> str:
        """CSV (RFC 4180 quoting, ``\\n`` line ends as ``ledger report --csv``): a header
        row (``CSV_COLUMNS``), one row per line, then a ``total`` row carrying the total in
        ``amount``; empty cells for fields that do not apply."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for line in self.lines:
            data = line.as_json()
            writer.writerow(["" if data[name] is None else data[name] for name in CSV_COLUMNS])
        writer.writerow(
            [
                "total" if name == "kind" else _cents(self.total) if name == "amount" else ""
                for name in CSV_COLUMNS
            ]
        )
        return out.getvalue()


def _six(value: Decimal | None) -> str | None:
    return None if value is None else format(round_half_away(value), "f")


def _cents(value: Decimal) -> str:
    return format(round_half_away(value, _CENTS), "f")


def _moment(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# Ledger rows of the period by operation and the rates they were priced with.
_USAGE = """
SELECT l.operation, coalesce(p.plan_code, l.metadata->>'rate_plan_code', '') AS plan_code,
       p.effective_from AS plan_effective_from, l.base_rate, l.multiplier, l.unit_price,
       coalesce(l.metadata->>'unit_of_measure', '') AS unit,
       sum(l.units) AS units, sum(l.total_dcu) AS dcu, sum(l.total_cost) AS cost
FROM billing_usage_ledger l LEFT JOIN billing_rate_plans p USING (rate_plan_id)
WHERE l.tenant_id = %(tenant)s AND l.billing_period = %(period)s
GROUP BY 1, 2, 3, 4, 5, 6, 7
ORDER BY 1, 3 NULLS FIRST, 2, 4, 5, 6, 7
"""
# A restore deletes its archive's totals (billing/archive.py): what is left is still archived.
_ARCHIVED = """
SELECT operation, sum(units) AS units, sum(total_dcu) AS dcu, sum(total_cost) AS cost
FROM billing_ledger_archive_totals
WHERE tenant_id = %(tenant)s AND billing_period = %(period)s
GROUP BY 1 ORDER BY 1
"""
# Byte-seconds each visibility's holdings reach in the period: every leaf atom a holding reaches
# through composition counts once per tenant and visibility, from its earliest holding on.
_STORAGE = """
WITH RECURSIVE reached(atom_id, visibility, held_from) AS (
    SELECT atom_id, visibility, greatest(created_at, %(start)s::timestamptz)
    FROM holdings WHERE tenant_id = %(tenant)s AND created_at < %(end)s::timestamptz
    UNION
    SELECT c.child_atom_id, r.visibility, r.held_from
    FROM reached r JOIN atom_components c ON c.parent_atom_id = r.atom_id
),
leaves AS (
    SELECT r.visibility, a.size_bytes, min(r.held_from) AS held_from
    FROM reached r JOIN atoms a ON a.atom_id = r.atom_id
    WHERE a.kind = 'leaf'
    GROUP BY r.visibility, a.atom_id, a.size_bytes
)
SELECT visibility,
       sum(size_bytes::numeric * extract(epoch FROM %(end)s::timestamptz - held_from))
           AS byte_seconds
FROM leaves GROUP BY visibility
"""
_SEATS = """
SELECT count(*) FROM principals WHERE tenant_id = %(tenant)s AND is_active
"""


def invoice_preview(
    connection: Connection,
    *,
    tenant_id: str,
    period: date,
    currency: str,
    fallback: PlanVersion,
) -> Invoice:
    """The preview of ``tenant_id``'s invoice for the month starting ``period``.

    ``fallback`` is the `[billing]` settings plan, used when no plan row applies. The caller
    checks the tenant exists and the period is not in the future; run it in one REPEATABLE
    READ transaction so every line reads the same rows."""
    start = datetime(period.year, period.month, 1, tzinfo=UTC)
    end = (start + timedelta(days=32)).replace(day=1)
    parameters = {"tenant": tenant_id, "period": period, "start": start, "end": end}
    plan = plan_in_force(connection, tenant_id, end - timedelta(microseconds=1))
    source = "database" if plan is not None else "settings"
    plan = plan or fallback
    lines = [
        InvoiceLine(
            LineKind.MONTHLY_FEE,
            f"{plan.name} monthly fee",
            "month",
            Decimal(1),
            None,
            Decimal(1),
            plan.monthly_fee,
            round_half_away(plan.monthly_fee, _CENTS),
            plan_code=plan.plan_code,
            plan_effective_from=plan.effective_from,
        ),
        *_usage_lines(connection, parameters),
        *_storage_lines(connection, parameters, plan, (end - start).total_seconds()),
        _seat_line(connection, parameters, plan),
    ]
    return Invoice(tenant_id, period, currency, plan, source, tuple(lines))


def _usage_lines(connection: Connection, parameters: dict[str, Any]) -> list[InvoiceLine]:
    lines = [
        InvoiceLine(
            LineKind.USAGE,
            f"{row.operation} at rate {_six(row.base_rate)} x {_six(row.multiplier)}",
            row.unit or "unit",
            row.units,
            None,
            row.units,
            row.unit_price,
            round_half_away(row.cost, _CENTS),
            operation=row.operation,
            plan_code=row.plan_code,
            plan_effective_from=row.plan_effective_from,
            rate=row.base_rate,
            multiplier=row.multiplier,
            dcu=row.dcu,
        )
        for row in connection.exec_driver_sql(_USAGE, parameters)
    ]
    lines.extend(
        InvoiceLine(
            LineKind.ARCHIVED_USAGE,
            f"{row.operation} (archived rows)",
            "unit",
            row.units,
            None,
            row.units,
            # The archive keeps totals, not prices: the average price per DCU.
            row.cost / row.dcu if row.dcu else Decimal(0),
            round_half_away(row.cost, _CENTS),
            operation=row.operation,
            dcu=row.dcu,
        )
        for row in connection.exec_driver_sql(_ARCHIVED, parameters)
    )
    return lines


def _storage_lines(
    connection: Connection, parameters: dict[str, Any], plan: PlanVersion, seconds: float
) -> Sequence[InvoiceLine]:
    held = {
        str(row.visibility): Decimal(row.byte_seconds)
        for row in connection.exec_driver_sql(_STORAGE, parameters)
    }
    period_seconds = Decimal(int(seconds))
    lines = []
    for visibility, included in (
        ("private", plan.included_private_storage_gb),
        ("public", plan.included_public_storage_gb),
    ):
        gb_month = round_half_away(held.get(visibility, Decimal(0)) / period_seconds / _GIGABYTE)
        billable = max(gb_month - included, Decimal(0))
        lines.append(
            InvoiceLine(
                LineKind.STORAGE,
                f"{visibility} storage",
                "GB-month",
                gb_month,
                included,
                billable,
                plan.storage_price_per_gb_month,
                round_half_away(billable * plan.storage_price_per_gb_month, _CENTS),
                plan_code=plan.plan_code,
                plan_effective_from=plan.effective_from,
            )
        )
    return lines


def _seat_line(
    connection: Connection, parameters: dict[str, Any], plan: PlanVersion
) -> InvoiceLine:
    active = Decimal(connection.exec_driver_sql(_SEATS, parameters).scalar_one())
    included = Decimal(plan.included_seat_count)
    billable = max(active - included, Decimal(0))
    return InvoiceLine(
        LineKind.SEATS,
        "active principals beyond the included seats",
        "seat",
        active,
        included,
        billable,
        plan.seat_price,
        round_half_away(billable * plan.seat_price, _CENTS),
        plan_code=plan.plan_code,
        plan_effective_from=plan.effective_from,
    )
