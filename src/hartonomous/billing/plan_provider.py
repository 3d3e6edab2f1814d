"""Tenant plans from the database (docs/billing.md, "Plans"), cached per tenant with expiry.

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
from datetime import datetime
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
    return _load(connection, tenant_id, billing, at).configuration


@dataclass(frozen=True)
class _Loaded:
    """A configuration and the interval it is in force: from ``since`` (the latest version of
    any plan that may apply effective by the moment read; None: before every version) until
    ``until`` (the next one's effective time; None: none is scheduled). Within that interval
    the same versions are in force, so the same configuration prices any moment of it."""

    configuration: BillingConfiguration
    since: datetime | None
    until: datetime | None
    # Seconds from the read (database wall clock) until ``until``; None: none is scheduled.
    seconds_left: float | None


# The wall clock, not now(): a long transaction's start would end the cache late. `since` and
# `next_change` bound the interval in which the versions in force at `at` stay the same.
_INTERVAL = """
SELECT clock_timestamp() AS now, a.at,
       (SELECT max(effective_from) FROM billing_rate_plans
        WHERE (tenant_id = %(tenant)s OR tenant_id IS NULL) AND effective_from <= a.at) AS since,
       (SELECT min(effective_from) FROM billing_rate_plans
        WHERE (tenant_id = %(tenant)s OR tenant_id IS NULL) AND effective_from > a.at)
           AS next_change
FROM (SELECT coalesce(%(at)s::timestamptz, clock_timestamp()) AS at) AS a
"""


def _load(
    connection: Connection, tenant_id: str, billing: BillingSettings, at: datetime | None
) -> _Loaded:
    fallback = configuration_from_settings(billing)
    with connection.cursor(row_factory=dict_row) as cursor:
        clock = cursor.execute(_INTERVAL, {"tenant": tenant_id, "at": at}).fetchone()
        assert clock is not None  # a SELECT without FROM filter always answers one row
        since: datetime | None = clock["since"]
        until: datetime | None = clock["next_change"]
        seconds_left = _seconds_until(until, clock)
        if since is None:  # no version applies yet: nothing to read
            return _Loaded(fallback, since, until, seconds_left)
        plan = cursor.execute(PLAN_IN_FORCE, {"tenant": tenant_id, "at": clock["at"]}).fetchone()
        if plan is None:
            return _Loaded(fallback, since, until, seconds_left)
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
    return _Loaded(configuration, since, until, seconds_left)


def _seconds_until(moment: datetime | None, clock: dict[str, Any]) -> float | None:
    if moment is None:
        return None
    now: datetime = clock["now"]
    return max((moment - now).total_seconds(), 0.0)


# Intervals of the past kept per tenant besides the current one (late events' plans).
_PAST_INTERVALS = 8


@dataclass
class _Entry:
    loaded: _Loaded
    created: float
    last_used: float
    # When the next plan version takes effect (monotonic clock); the entry ends there.
    expires: float

    def covers(self, at: datetime) -> bool:
        """Whether ``at`` falls in the interval the configuration is in force."""
        since, until = self.loaded.since, self.loaded.until
        return (since is None or since <= at) and (until is None or at < until)


class PlanProvider:
    """`load_configuration` behind a per-tenant cache with sliding and absolute expiry.

    Per tenant it keeps the plan in force now and those of up to `_PAST_INTERVALS` past
    intervals (each with the interval its versions were in force), so events of a batch, late
    ones included, are priced from memory: one read per tenant and interval, not per event.
    A version of the past never changes and a new one takes effect at least the absolute cache
    interval after it is written (docs/billing.md "Plans"), so a cached interval stays right
    until its entry expires."""

    def __init__(
        self, billing: BillingSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._billing = billing
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._past: dict[str, list[_Entry]] = {}

    def configuration(self, connection: Connection, tenant_id: str) -> BillingConfiguration:
        """The tenant's plan in force now (the settings plan for a blank tenant)."""
        if not tenant_id.strip():
            return configuration_from_settings(self._billing)
        return self._current(connection, tenant_id).loaded.configuration

    def configuration_at(
        self, connection: Connection, tenant_id: str, at: datetime | None
    ) -> BillingConfiguration:
        """The tenant's plan in force at ``at`` (aware; None: now): a cached one whose
        interval holds ``at``, else read for ``at`` and cached (a late event is priced by the
        version in force when it happened, docs/billing.md "Plans")."""
        if not tenant_id.strip():
            return configuration_from_settings(self._billing)
        current = self._current(connection, tenant_id)
        if at is None or current.covers(at):
            return current.loaded.configuration
        now = self._clock()
        with self._lock:
            for entry in self._past.get(tenant_id, ()):
                if entry.covers(at) and self._fresh(entry, now):
                    entry.last_used = now
                    return entry.loaded.configuration
        loaded = _load(connection, tenant_id, self._billing, at)
        # No end but the cache intervals: `covers` keeps it to its own interval.
        entry = _Entry(loaded, now, now, float("inf"))
        with self._lock:
            kept = [e for e in self._past.get(tenant_id, ()) if self._fresh(e, now)]
            self._past[tenant_id] = [entry, *kept][:_PAST_INTERVALS]
        return loaded.configuration

    def _current(self, connection: Connection, tenant_id: str) -> _Entry:
        now = self._clock()
        with self._lock:
            entry = self._entries.get(tenant_id)
            if entry is not None and self._fresh(entry, now):
                entry.last_used = now
                return entry
        loaded = _load(connection, tenant_id, self._billing, None)
        entry = _Entry(loaded, now, now, self._expiry(loaded, now))
        with self._lock:
            self._entries[tenant_id] = entry
        return entry

    @staticmethod
    def _expiry(loaded: _Loaded, now: float) -> float:
        left = loaded.seconds_left
        return float("inf") if left is None else now + left

    def _fresh(self, entry: _Entry, now: float) -> bool:
        return (
            now < entry.expires
            and now - entry.last_used < self._billing.plan_cache_sliding_seconds
            and now - entry.created < self._billing.plan_cache_absolute_seconds
        )
