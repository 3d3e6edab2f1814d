"""The rate-plan catalogue in the database, seeded from `[billing]` settings.

The database is authoritative: seeding creates the default global plan when it is missing and
otherwise only reports whether it still matches settings, unless told to update it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, select

from hartonomous.billing.plan_versions import (
    OperationRate,
    PlanMultiplier,
    PlanVersion,
    write_version,
)
from hartonomous.config.sections import BillingSettings
from hartonomous.db.tables import billing_multipliers, billing_operation_rates, billing_rate_plans


class SeedStatus(StrEnum):
    CREATED = "created"
    UNCHANGED = "unchanged"
    DIFFERS = "differs"
    UPDATED = "updated"


@dataclass(frozen=True)
class PlanSeedResult:
    status: SeedStatus
    rate_plan_id: uuid.UUID
    plan_code: str


@dataclass(frozen=True)
class PlanDefinition:
    """A plan as plain values: comparable between settings and the database."""

    plan: dict[str, Any]
    rates: frozenset[tuple[str, Decimal, str, str | None]]
    multipliers: frozenset[tuple[str, str, Decimal]]


def plan_from_settings(billing: BillingSettings) -> PlanDefinition:
    plan = {
        "plan_code": billing.default_plan_code,
        "name": billing.default_plan_name,
        "description": billing.default_plan_description,
        "default_rate": billing.default_rate,
        "monthly_fee": billing.default_monthly_fee,
        "unit_price_per_dcu": billing.unit_price_per_dcu,
        "included_public_storage_gb": billing.default_included_public_storage_gb,
        "included_private_storage_gb": billing.default_included_private_storage_gb,
        "included_seat_count": billing.default_included_seat_count,
        "storage_price_per_gb_month": billing.default_storage_price_per_gb_month,
        "seat_price": billing.default_seat_price,
        "allows_private_data": billing.default_allows_private_data,
        "can_query_public_corpus": billing.default_can_query_public_corpus,
    }
    rates = frozenset(
        (
            operation,
            rate,
            billing.operation_units.get(operation, ""),
            billing.operation_categories.get(operation),
        )
        for operation, rate in billing.operation_rates.items()
    )
    multipliers = frozenset(
        (dimension, key, value)
        for dimension, table in billing.multipliers.model_dump().items()
        for key, value in table.items()
    )
    return PlanDefinition(plan=plan, rates=rates, multipliers=multipliers)


def _stored_plan(
    connection: Connection, rate_plan_id: uuid.UUID, columns: list[str]
) -> PlanDefinition:
    row = connection.execute(
        select(*(billing_rate_plans.c[name] for name in columns)).where(
            billing_rate_plans.c.rate_plan_id == rate_plan_id
        )
    ).one()
    rates = connection.execute(
        select(
            billing_operation_rates.c.operation,
            billing_operation_rates.c.rate,
            billing_operation_rates.c.unit_of_measure,
            billing_operation_rates.c.category,
        ).where(
            billing_operation_rates.c.rate_plan_id == rate_plan_id,
            billing_operation_rates.c.is_active,
        )
    ).all()
    multipliers = connection.execute(
        select(
            billing_multipliers.c.dimension,
            billing_multipliers.c.key,
            billing_multipliers.c.multiplier,
        ).where(billing_multipliers.c.rate_plan_id == rate_plan_id, billing_multipliers.c.is_active)
    ).all()
    return PlanDefinition(
        plan=dict(row._mapping),
        rates=frozenset((r.operation, r.rate, r.unit_of_measure, r.category) for r in rates),
        multipliers=frozenset((m.dimension, m.key, m.multiplier) for m in multipliers),
    )


def seed_default_plan(
    connection: Connection, billing: BillingSettings, *, update_existing: bool = False
) -> PlanSeedResult:
    """Make sure the global default plan exists; compare it with settings when it does."""
    wanted = plan_from_settings(billing)
    code = billing.default_plan_code
    # Serialise concurrent seeders (two `up` against one external database).
    connection.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext('hartonomous.seed.plan'))")
    # The newest version: what a change would be based on (docs/billing.md, "Plans").
    existing = connection.execute(
        select(billing_rate_plans.c.rate_plan_id)
        .where(billing_rate_plans.c.tenant_id.is_(None), billing_rate_plans.c.plan_code == code)
        .order_by(billing_rate_plans.c.effective_from.desc())
        .limit(1)
    ).scalar_one_or_none()
    if existing is None:
        written = write_version(connection, _as_version(wanted), None)
        assert written.rate_plan_id is not None
        return PlanSeedResult(SeedStatus.CREATED, written.rate_plan_id, code)
    if _stored_plan(connection, existing, list(wanted.plan)) == wanted:
        return PlanSeedResult(SeedStatus.UNCHANGED, existing, code)
    if not update_existing:
        return PlanSeedResult(SeedStatus.DIFFERS, existing, code)
    # A new version from now: rows already billed keep the version they were priced with.
    written = write_version(connection, _as_version(wanted), None)
    assert written.rate_plan_id is not None
    return PlanSeedResult(SeedStatus.UPDATED, written.rate_plan_id, code)


def settings_version(billing: BillingSettings) -> PlanVersion:
    """The `[billing]` default plan as an unwritten plan version (the fallback plan)."""
    return _as_version(plan_from_settings(billing))


def _as_version(wanted: PlanDefinition) -> PlanVersion:
    return PlanVersion(
        tenant_id=None,
        **wanted.plan,
        rates=tuple(
            OperationRate(operation, rate, unit, category)
            for operation, rate, unit, category in sorted(wanted.rates, key=lambda r: r[0])
        ),
        multipliers=tuple(PlanMultiplier(*item) for item in sorted(wanted.multipliers)),
    )
