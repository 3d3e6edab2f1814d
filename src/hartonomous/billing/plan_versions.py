"""Versioned rate plans (docs/billing.md, "Plans"): reading and writing plan versions.

A plan is its tenant (``None``: the global plan, for tenants without one of their own) and its
code. Each row of ``billing_rate_plans`` is one version of a plan, in force from its
``effective_from`` until the next version's; a version, its operation rates and multipliers
are never changed once written, so a ledger row's ``rate_plan_id`` names exactly the rates it
was priced with. A change (update, activate, deactivate) writes a new version.

The plan in force for a tenant at a time: of each of the tenant's plans and each global plan,
the newest version effective by then; of those that are active, the tenant's own before the
global ones, then the most recently effective.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, RowMapping, func, insert, select
from sqlalchemy.exc import IntegrityError

from hartonomous.db.tables import (
    MULTIPLIER_DIMENSIONS,
    billing_multipliers,
    billing_operation_rates,
    billing_rate_plans,
)
from hartonomous.errors import ConflictError, NotFoundError, UsageError

__all__ = [
    "PLAN_IN_FORCE",
    "OperationRate",
    "PlanMultiplier",
    "PlanNotFoundError",
    "PlanVersion",
    "in_force_sql",
    "plan_in_force",
    "plan_versions",
    "write_version",
]

# Every version column the plan in force is read with (psycopg parameters: tenant, at).
_COLUMNS = (
    "rate_plan_id, tenant_id, plan_code, name, description, effective_from, is_active, "
    "monthly_fee, default_rate, unit_price_per_dcu, storage_price_per_gb_month, seat_price, "
    "included_public_storage_gb, included_private_storage_gb, included_seat_count, "
    "allows_private_data, can_query_public_corpus"
)
# A plan without a code (legacy rows) is a plan of its own per row.
_PLAN_KEY = "tenant_id, CASE WHEN plan_code = '' THEN rate_plan_id::text ELSE plan_code END"


def in_force_sql(tenant: str, at: str, columns: str = _COLUMNS) -> str:
    """A query of ``columns`` of the plan version in force for ``tenant`` at ``at`` (SQL
    placeholders or expressions); no row when no plan row applies."""
    return f"""
SELECT {columns} FROM (
    SELECT DISTINCT ON ({_PLAN_KEY}) {_COLUMNS}
    FROM billing_rate_plans
    WHERE (tenant_id = {tenant} OR tenant_id IS NULL) AND effective_from <= {at}
    ORDER BY {_PLAN_KEY}, effective_from DESC
) AS in_force
WHERE is_active
ORDER BY tenant_id IS NULL, effective_from DESC, rate_plan_id
LIMIT 1
"""


# psycopg parameters: tenant, at. `next_change`: when the next version of any plan that may
# apply takes effect (None: none is scheduled).
PLAN_IN_FORCE = in_force_sql(
    "%(tenant)s",
    "%(at)s",
    _COLUMNS + ", (SELECT min(effective_from) FROM billing_rate_plans WHERE (tenant_id = %(tenant)s"
    " OR tenant_id IS NULL) AND effective_from > %(at)s) AS next_change",
)

_MONEY_FIELDS = (
    "monthly_fee",
    "default_rate",
    "unit_price_per_dcu",
    "storage_price_per_gb_month",
    "seat_price",
)
_GB_FIELDS = ("included_public_storage_gb", "included_private_storage_gb")
_MAX_MONEY = Decimal("999999999999.999999")  # NUMERIC(18,6)
_MAX_GB = Decimal("9999999999999999.99")  # NUMERIC(18,2)


class PlanNotFoundError(NotFoundError):
    """No plan with that code (for that tenant, or global)."""

    code = "plan-not-found"


@dataclass(frozen=True)
class OperationRate:
    """An operation's base rate in DCU per unit, its unit of measure and category."""

    operation: str
    rate: Decimal
    unit_of_measure: str = ""
    category: str | None = None


@dataclass(frozen=True)
class PlanMultiplier:
    """A factor for one key of one of the six dimensions (docs/billing.md, "The algorithm")."""

    dimension: str
    key: str
    multiplier: Decimal


@dataclass(frozen=True)
class PlanVersion:
    """One version of a plan. Money is Decimal at NUMERIC(18,6); storage GB at 2 places."""

    tenant_id: str | None
    plan_code: str
    name: str
    effective_from: datetime | None = None
    rate_plan_id: uuid.UUID | None = None
    description: str | None = None
    is_active: bool = True
    monthly_fee: Decimal = Decimal(0)
    default_rate: Decimal = Decimal("0.01")
    unit_price_per_dcu: Decimal = Decimal("0.00008")
    storage_price_per_gb_month: Decimal = Decimal(0)
    seat_price: Decimal = Decimal(0)
    included_public_storage_gb: Decimal = Decimal(0)
    included_private_storage_gb: Decimal = Decimal(0)
    included_seat_count: int = 1
    allows_private_data: bool = False
    can_query_public_corpus: bool = False
    rates: tuple[OperationRate, ...] = field(default=())
    multipliers: tuple[PlanMultiplier, ...] = field(default=())

    def values(self) -> dict[str, Any]:
        """The plan row's columns (without id and effective time)."""
        return {
            name: getattr(self, name)
            for name in (
                "tenant_id",
                "plan_code",
                "name",
                "description",
                "is_active",
                *_MONEY_FIELDS,
                *_GB_FIELDS,
                "included_seat_count",
                "allows_private_data",
                "can_query_public_corpus",
            )
        }


def check_version(version: PlanVersion) -> None:
    """Raise ``UsageError`` naming the first value a plan version may not hold."""
    if not version.plan_code.strip() or not version.name.strip():
        raise UsageError("a plan needs a non-blank code and name")
    for name in _MONEY_FIELDS:
        _check_amount(name, getattr(version, name), _MAX_MONEY, places=6)
    for name in _GB_FIELDS:
        _check_amount(name, getattr(version, name), _MAX_GB, places=2)
    if version.included_seat_count < 0:
        raise UsageError(f"included_seat_count {version.included_seat_count} is negative")
    operations = [rate.operation for rate in version.rates]
    if len({op.lower() for op in operations}) != len(operations):
        raise UsageError("an operation has more than one rate")
    for rate in version.rates:
        if not rate.operation.strip():
            raise UsageError("an operation rate needs a non-blank operation")
        _check_amount(f"rate of {rate.operation!r}", rate.rate, _MAX_MONEY, places=6)
    seen: set[tuple[str, str]] = set()
    for item in version.multipliers:
        if item.dimension not in MULTIPLIER_DIMENSIONS:
            raise UsageError(
                f"unknown multiplier dimension {item.dimension!r} (one of "
                f"{', '.join(MULTIPLIER_DIMENSIONS)})"
            )
        if not item.key.strip():
            raise UsageError(f"a {item.dimension} multiplier needs a non-blank key")
        if (item.dimension, item.key.lower()) in seen:
            raise UsageError(f"{item.dimension} multiplier {item.key!r} is given twice")
        seen.add((item.dimension, item.key.lower()))
        name = f"{item.dimension} multiplier {item.key!r}"
        _check_amount(name, item.multiplier, _MAX_MONEY, places=6)
        if item.multiplier == 0:
            raise UsageError(f"{name} must be greater than 0")


def _check_amount(name: str, value: object, top: Decimal, *, places: int) -> None:
    if not isinstance(value, Decimal) or not value.is_finite():
        raise UsageError(f"{name} {value!r} is not a decimal number")
    if value < 0:
        raise UsageError(f"{name} {value} is negative")
    if value > top:
        raise UsageError(f"{name} {value} is over {top}")
    exponent = value.normalize().as_tuple().exponent
    if isinstance(exponent, int) and -exponent > places:
        raise UsageError(f"{name} {value} has more than {places} decimal places")


def plan_versions(
    connection: Connection, tenant_id: str | None, plan_code: str
) -> list[PlanVersion]:
    """Every version of a plan, oldest first; ``PlanNotFoundError`` when it has none."""
    rows = (
        connection.execute(
            select(billing_rate_plans)
            .where(
                billing_rate_plans.c.tenant_id.is_(None)
                if tenant_id is None
                else billing_rate_plans.c.tenant_id == tenant_id,
                billing_rate_plans.c.plan_code == plan_code,
            )
            .order_by(billing_rate_plans.c.effective_from)
        )
        .mappings()
        .all()
    )
    if not rows:
        owner = "global" if tenant_id is None else f"tenant {tenant_id!r}"
        raise PlanNotFoundError(f"no plan {plan_code!r} ({owner})")
    return [_version(connection, row) for row in rows]


def version_by_id(connection: Connection, rate_plan_id: uuid.UUID) -> PlanVersion:
    row = (
        connection.execute(
            select(billing_rate_plans).where(billing_rate_plans.c.rate_plan_id == rate_plan_id)
        )
        .mappings()
        .one()
    )
    return _version(connection, row)


def plan_in_force(connection: Connection, tenant_id: str, at: datetime) -> PlanVersion | None:
    """The version in force for ``tenant_id`` at ``at``; None when no plan row applies."""
    row = (
        connection.exec_driver_sql(PLAN_IN_FORCE, {"tenant": tenant_id, "at": at})
        .mappings()
        .first()
    )
    return None if row is None else _version(connection, row)


def _version(connection: Connection, row: RowMapping) -> PlanVersion:
    plan_id = row["rate_plan_id"]
    rates = connection.execute(
        select(
            billing_operation_rates.c.operation,
            billing_operation_rates.c.rate,
            billing_operation_rates.c.unit_of_measure,
            billing_operation_rates.c.category,
        )
        .where(
            billing_operation_rates.c.rate_plan_id == plan_id, billing_operation_rates.c.is_active
        )
        .order_by(billing_operation_rates.c.operation)
    ).all()
    multipliers = connection.execute(
        select(
            billing_multipliers.c.dimension,
            billing_multipliers.c.key,
            billing_multipliers.c.multiplier,
        )
        .where(billing_multipliers.c.rate_plan_id == plan_id, billing_multipliers.c.is_active)
        .order_by(billing_multipliers.c.dimension, billing_multipliers.c.key)
    ).all()
    known = {name: row[name] for name in PlanVersion.__dataclass_fields__ if name in row}
    return PlanVersion(
        **known,
        rates=tuple(
            OperationRate(r.operation, r.rate, r.unit_of_measure, r.category) for r in rates
        ),
        multipliers=tuple(PlanMultiplier(m.dimension, m.key, m.multiplier) for m in multipliers),
    )


def write_version(
    connection: Connection, version: PlanVersion, effective_from: datetime | None
) -> PlanVersion:
    """Insert ``version`` (its rates and multipliers) in force from ``effective_from`` (None:
    the transaction's ``now()``); the version as written.

    Raises ``UsageError`` for a value a plan may not hold and ``ConflictError`` when the plan
    already has a version at that exact time; nothing is written then."""
    check_version(version)
    try:
        with connection.begin_nested():
            plan_id, effective = connection.execute(
                insert(billing_rate_plans)
                .values(
                    effective_from=func.now() if effective_from is None else effective_from,
                    **version.values(),
                )
                .returning(billing_rate_plans.c.rate_plan_id, billing_rate_plans.c.effective_from)
            ).one()
            _write_children(connection, plan_id, version.rates, version.multipliers)
    except IntegrityError as exc:
        if "ux_billing_rate_plans_tenant_id_plan_code" in str(exc.orig):
            when = "now" if effective_from is None else effective_from.isoformat()
            raise ConflictError(
                f"plan {version.plan_code!r} already has a version effective {when}"
            ) from None
        raise
    return replace(version, rate_plan_id=plan_id, effective_from=effective)


def _write_children(
    connection: Connection,
    plan_id: uuid.UUID,
    rates: Iterable[OperationRate],
    multipliers: Sequence[PlanMultiplier],
) -> None:
    rows = [
        {
            "rate_plan_id": plan_id,
            "operation": rate.operation,
            "rate": rate.rate,
            "unit_of_measure": rate.unit_of_measure,
            "category": rate.category,
        }
        for rate in sorted(rates, key=lambda r: r.operation)
    ]
    if rows:
        connection.execute(insert(billing_operation_rates), rows)
    factors = [
        {
            "rate_plan_id": plan_id,
            "dimension": item.dimension,
            "key": item.key,
            "multiplier": item.multiplier,
        }
        for item in sorted(multipliers, key=lambda m: (m.dimension, m.key))
    ]
    if factors:
        connection.execute(insert(billing_multipliers), factors)
