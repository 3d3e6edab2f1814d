"""Tenant plans from the database (digest §4.3), cached per tenant with expiry.

The plan is the version in force (billing/plan_versions.py, docs/billing.md "Plans"): the
tenant's own active plan, else the global one, else the `[billing]` settings. Cache entries
expire after a sliding and an absolute interval, as the original's (5 and 15 minutes by
default: `[billing] plan_cache_*_seconds`), and when the next scheduled plan version takes
effect. Plan versions are written at least the absolute interval ahead, so a cached plan is
never used past the moment a newer version takes effect.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row

from hartonomous.billing.configuration import BillingConfiguration, configuration_from_settings
from hartonomous.billing.plan_versions import PLAN_IN_FORCE
from hartonomous.config.sections import BillingSettings
from hartonomous.db.tables import MULTIPLIER_DIMENSIONS

Connection = psycopg.Connection[Any]

# The table's check constraint admits exactly these dimension names (MULTIPLIER_DIMENSIONS).
_DIMENSIONS = {name: f"{name}_multipliers" for name in MULTIPLIER_DIMENSIONS}


def load_configuration(
    connection: Connection,
    tenant_id: str,
    billing: BillingSettings,
    at: datetime | None = None,
) -> BillingConfiguration:
    """The tenant's plan in force at ``at`` (default: the database's clock) as a configuration,
    read now (no cache)."""
    return _load(connection, tenant_id, billing, at)[0]


def _load(
    connection: Connection, tenant_id: str, billing: BillingSettings, at: datetime | None
) -> tuple[BillingConfiguration, float | None]:
    """The configuration and the seconds until the next plan version takes effect (None:
    none is scheduled)."""
    fallback = configuration_from_settings(billing)
    with connection.cursor(row_factory=dict_row) as cursor:
        # The wall clock, not now(): a long transaction's start would end the cache late.
        cursor.execute(
            "SELECT clock_timestamp() AS now, coalesce(%(at)s::timestamptz, clock_timestamp()) "
            "AS at",
            {"at": at},
        )
        clock = cursor.fetchone()
        assert clock is not None
        plan = cursor.execute(PLAN_IN_FORCE, {"tenant": tenant_id, "at": clock["at"]}).fetchone()
        if plan is None:
            upcoming = cursor.execute(_NEXT_CHANGE, {"tenant": tenant_id, "at": clock["at"]})
            next_change = upcoming.fetchone()
            assert next_change is not None  # an aggregate always answers one row
            return fallback, _seconds_until(next_change["next_change"], clock)
    until = _seconds_until(plan["next_change"], clock)
    rate_plan_id: uuid.UUID = plan["rate_plan_id"]
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
    unit_price = Decimal(plan["unit_price_per_dcu"])
    configuration = BillingConfiguration(
        rate_plan_id=rate_plan_id,
        plan_code=str(plan["plan_code"]),
        plan_name=str(plan["name"]),
        default_rate=Decimal(plan["default_rate"]),
        # A non-positive stored price falls back to settings, as the original did.
        unit_price_per_dcu=unit_price if unit_price > 0 else fallback.unit_price_per_dcu,
        allows_private_data=bool(plan["allows_private_data"]),
        can_query_public_corpus=bool(plan["can_query_public_corpus"]),
        included_public_storage_gb=Decimal(plan["included_public_storage_gb"]),
        included_private_storage_gb=Decimal(plan["included_private_storage_gb"]),
        included_seat_count=int(plan["included_seat_count"]),
        operation_rates={str(op): Decimal(rate) for op, rate, _, _ in rates},
        operation_units={str(op): str(unit) for op, _, unit, _ in rates if unit and unit.strip()},
        operation_categories={
            str(op): str(category) for op, _, _, category in rates if category and category.strip()
        },
        **tables,
    )
    return configuration, until


_NEXT_CHANGE = """
SELECT min(effective_from) AS next_change FROM billing_rate_plans
WHERE (tenant_id = %(tenant)s OR tenant_id IS NULL) AND effective_from > %(at)s
"""


def _seconds_until(moment: datetime | None, clock: dict[str, Any]) -> float | None:
    if moment is None:
        return None
    now: datetime = clock["now"]
    return max((moment - now).total_seconds(), 0.0)


@dataclass
class _Entry:
    configuration: BillingConfiguration
    created: float
    last_used: float
    # When the next plan version takes effect (monotonic clock); the entry ends there.
    expires: float
    # The wall-clock time it was read: the version read was in force from then until
    # `expires` at least (a version can only be scheduled ahead), so it prices events of then on.
    read_at: datetime


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
        read_at = datetime.now(UTC)
        configuration, until = _load(connection, tenant_id, self._billing, None)
        expires = float("inf") if until is None else now + until
        with self._lock:
            self._entries[tenant_id] = _Entry(configuration, now, now, expires, read_at)
        return configuration

    def configuration_at(
        self, connection: Connection, tenant_id: str, at: datetime | None
    ) -> BillingConfiguration:
        """The tenant's plan in force at ``at`` (None: now): the cached one when ``at`` is not
        before the cache read it, else read for ``at`` (a late event is priced by the version
        in force when it happened, docs/billing.md "Plans")."""
        configuration = self.configuration(connection, tenant_id)
        if at is None or not tenant_id.strip():
            return configuration
        with self._lock:
            entry = self._entries.get(tenant_id)
        if entry is not None and at >= entry.read_at:
            return configuration
        return load_configuration(connection, tenant_id, self._billing, at)

    def _fresh(self, entry: _Entry, now: float) -> bool:
        return (
            now < entry.expires
            and now - entry.last_used < self._billing.plan_cache_sliding_seconds
            and now - entry.created < self._billing.plan_cache_absolute_seconds
        )
