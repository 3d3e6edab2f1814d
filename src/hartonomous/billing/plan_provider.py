"""Tenant plans from the database (digest §4.3), cached per tenant with expiry.

The plan is the newest active plan of the tenant, else the newest active global plan, else the
`[billing]` settings. Cache entries expire after a sliding and an absolute interval, as the
original's (5 and 15 minutes by default: `[billing] plan_cache_*_seconds`).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg

from hartonomous.billing.configuration import BillingConfiguration, configuration_from_settings
from hartonomous.config.sections import BillingSettings
from hartonomous.db.tables import MULTIPLIER_DIMENSIONS

Connection = psycopg.Connection[Any]

_PLAN = """
SELECT rate_plan_id, plan_code, name, default_rate, unit_price_per_dcu, allows_private_data,
       can_query_public_corpus, included_public_storage_gb, included_private_storage_gb,
       included_seat_count
FROM billing_rate_plans
WHERE is_active AND (tenant_id = %(tenant)s OR tenant_id IS NULL)
ORDER BY tenant_id IS NULL, updated_at DESC, rate_plan_id
LIMIT 1
"""
# The table's check constraint admits exactly these dimension names (MULTIPLIER_DIMENSIONS).
_DIMENSIONS = {name: f"{name}_multipliers" for name in MULTIPLIER_DIMENSIONS}


def load_configuration(
    connection: Connection, tenant_id: str, billing: BillingSettings
) -> BillingConfiguration:
    """The tenant's plan as a configuration, read now (no cache)."""
    fallback = configuration_from_settings(billing)
    plan = connection.execute(_PLAN, {"tenant": tenant_id}).fetchone()
    if plan is None:
        return fallback
    rate_plan_id: uuid.UUID = plan[0]
    rates = connection.execute(
        "SELECT operation, rate, unit_of_measure, category FROM billing_operation_rates "
        "WHERE rate_plan_id = %s AND is_active ORDER BY operation",
        (rate_plan_id,),
    ).fetchall()
    multipliers = connection.execute(
        "SELECT dimension, key, multiplier FROM billing_multipliers "
        "WHERE rate_plan_id = %s AND is_active ORDER BY dimension, key",
        (rate_plan_id,),
    ).fetchall()
    tables: dict[str, dict[str, Decimal]] = {name: {} for name in set(_DIMENSIONS.values())}
    for dimension, key, value in multipliers:
        tables[_DIMENSIONS[str(dimension)]][str(key)] = Decimal(value)
    unit_price = Decimal(plan[4])
    return BillingConfiguration(
        rate_plan_id=rate_plan_id,
        plan_code=str(plan[1]),
        plan_name=str(plan[2]),
        default_rate=Decimal(plan[3]),
        # A non-positive stored price falls back to settings, as the original did.
        unit_price_per_dcu=unit_price if unit_price > 0 else fallback.unit_price_per_dcu,
        allows_private_data=bool(plan[5]),
        can_query_public_corpus=bool(plan[6]),
        included_public_storage_gb=Decimal(plan[7]),
        included_private_storage_gb=Decimal(plan[8]),
        included_seat_count=int(plan[9]),
        operation_rates={str(op): Decimal(rate) for op, rate, _, _ in rates},
        operation_units={str(op): str(unit) for op, _, unit, _ in rates if unit and unit.strip()},
        operation_categories={
            str(op): str(category) for op, _, _, category in rates if category and category.strip()
        },
        **tables,
    )


@dataclass
class _Entry:
    configuration: BillingConfiguration
    created: float
    last_used: float


class PlanProvider:
    """`load_configuration` behind a per-tenant cache with sliding and absolute expiry."""

    def __init__(
        self, billing: BillingSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._billing = billing
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}

    def configuration(self, connection: Connection, tenant_id: str) -> BillingConfiguration:
        if not tenant_id.strip():
            return configuration_from_settings(self._billing)
        now = self._clock()
        with self._lock:
            entry = self._entries.get(tenant_id)
            if entry is not None and self._fresh(entry, now):
                entry.last_used = now
                return entry.configuration
        configuration = load_configuration(connection, tenant_id, self._billing)
        with self._lock:
            self._entries[tenant_id] = _Entry(configuration, now, now)
        return configuration

    def _fresh(self, entry: _Entry, now: float) -> bool:
        return (
            now - entry.last_used < self._billing.plan_cache_sliding_seconds
            and now - entry.created < self._billing.plan_cache_absolute_seconds
        )
