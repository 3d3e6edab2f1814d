"""Billing plans and invoice previews (docs/billing.md, "Plans" and "Invoice preview").

Plans are platform data: every use case here reads and writes on
``platform.maintenance_engine``; the CLI and the admin-only API routes call them. A plan change
writes a new version effective at least ``[billing] plan_cache_absolute_seconds`` ahead (the
sync worker caches a tenant's plan at most that long), so the change applies to every event
from its effective time on and to no row already written.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    WithJsonSchema,
)
from sqlalchemy import Connection, func, select, text

from hartonomous.billing.export import parse_period
from hartonomous.billing.invoice import Invoice, invoice_preview
from hartonomous.billing.plan_versions import (
    OperationRate,
    PlanMultiplier,
    PlanVersion,
    plan_versions,
    version_by_id,
    write_version,
)
from hartonomous.billing.plans import settings_version
from hartonomous.db.tables import billing_rate_plans
from hartonomous.errors import ConflictError, UsageError
from hartonomous.instants import in_utc
from hartonomous.request_bodies import RequestBody
from hartonomous.security.tenants import get_tenant
from hartonomous.services.database_errors import database_errors
from hartonomous.services.platform import Platform
from hartonomous.strict_fields import DecimalText, Timestamp, integral_number

__all__ = [
    "MultiplierInput",
    "PlanChange",
    "PlanDraft",
    "PlanSummary",
    "PlanView",
    "RateInput",
    "change_plan",
    "create_plan",
    "invoice",
    "list_plans",
    "set_plan_active",
    "show_plan",
    "validated",
]

Text = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\x00]+$")]
Code = Annotated[str, Field(pattern=r"^[a-z0-9_]{1,63}$")]
# Money and factors in: decimal text, never a JSON number (binary floating point). Range and
# scale are checked by the plan (billing/plan_versions.py check_version), which names the field.
Amount = Annotated[
    DecimalText,
    WithJsonSchema({"type": "string", "pattern": r"^-?[0-9]{1,30}(\.[0-9]{1,30})?$"}),
]
Label = Annotated[str, Field(max_length=64, pattern=r"^[^\x00]*$")]


_Model = TypeVar("_Model", bound=BaseModel)


class RateInput(RequestBody):
    """An operation's base rate (DCU per unit), unit of measure and category."""

    operation: Text
    rate: Amount
    unit_of_measure: Label = ""
    category: Label | None = None


class MultiplierInput(RequestBody):
    """A factor for ``key`` of ``dimension`` (generation, complexity, content, grounding,
    guarantee, provenance)."""

    dimension: Label
    key: Text
    multiplier: Amount


class MultiplierKey(RequestBody):
    dimension: Label
    key: Text


class _PlanFields(RequestBody):
    name: Text | None = None
    description: Annotated[str | None, Field(max_length=256, pattern=r"^[^\x00]*$")] = None
    monthly_fee: Amount | None = None
    default_rate: Amount | None = None
    unit_price_per_dcu: Amount | None = None
    storage_price_per_gb_month: Amount | None = None
    seat_price: Amount | None = None
    included_public_storage_gb: Amount | None = None
    included_private_storage_gb: Amount | None = None
    included_seat_count: (
        Annotated[StrictInt, Field(ge=0, le=2**31 - 1), BeforeValidator(integral_number)] | None
    ) = None
    allows_private_data: StrictBool | None = None
    can_query_public_corpus: StrictBool | None = None
    # Default: the earliest allowed, now + [billing] plan_cache_absolute_seconds.
    effective_from: Timestamp | None = None


class PlanDraft(_PlanFields):
    """A new plan: a code (lower-case letters, digits, '_'), a name, the tenant it is for
    (None: the global plan), its prices, rates and multipliers."""

    plan_code: Code
    name: Text
    tenant_id: Annotated[str | None, Field(min_length=1, max_length=64, pattern=r"^[^\x00]+$")] = (
        None
    )
    rates: list[RateInput] = Field(default_factory=list)
    multipliers: list[MultiplierInput] = Field(default_factory=list)


class PlanChange(_PlanFields):
    """Changes to a plan's newest version: given fields replace, ``rates`` and
    ``multipliers`` are added or replace the entry of the same operation / dimension and key,
    ``remove_rates`` and ``remove_multipliers`` must name entries the plan has."""

    rates: list[RateInput] = Field(default_factory=list)
    remove_rates: list[Text] = Field(default_factory=list)
    multipliers: list[MultiplierInput] = Field(default_factory=list)
    remove_multipliers: list[MultiplierKey] = Field(default_factory=list)


class RateView(BaseModel):
    operation: str
    rate: Decimal
    unit_of_measure: str
    category: str | None


class MultiplierView(BaseModel):
    dimension: str
    key: str
    multiplier: Decimal


class PlanView(BaseModel):
    """One plan version; money as decimal strings."""

    model_config = ConfigDict(from_attributes=True)
    rate_plan_id: uuid.UUID
    tenant_id: str | None
    plan_code: str
    name: str
    description: str | None
    effective_from: datetime
    is_active: bool
    monthly_fee: Decimal
    default_rate: Decimal
    unit_price_per_dcu: Decimal
    storage_price_per_gb_month: Decimal
    seat_price: Decimal
    included_public_storage_gb: Decimal
    included_private_storage_gb: Decimal
    included_seat_count: int
    allows_private_data: bool
    can_query_public_corpus: bool
    rates: list[RateView]
    multipliers: list[MultiplierView]


class PlanSummary(BaseModel):
    """A plan: its version in force now (or, before its first takes effect, that one), the
    number of versions and when the next scheduled one takes effect."""

    tenant_id: str | None
    plan_code: str
    name: str
    is_active: bool
    rate_plan_id: uuid.UUID
    effective_from: datetime
    versions: int
    next_change: datetime | None


def validated(model: type[_Model], data: dict[str, object]) -> _Model:
    """``model`` from ``data``; a ``UsageError`` naming each field that does not fit."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
        raise UsageError(f"invalid plan: {problems}") from None


def list_plans(platform: Platform, tenant_id: str | None = None) -> list[PlanSummary]:
    """Every plan (of one tenant and the global ones when ``tenant_id`` is given), ordered
    global first, then by tenant and code."""
    query = text(
        """
        WITH versions AS (
            SELECT *, count(*) OVER plan AS versions,
                   rank() OVER (PARTITION BY tenant_id, plan_code
                                ORDER BY effective_from <= now() DESC,
                                         CASE WHEN effective_from <= now()
                                              THEN effective_from END DESC,
                                         effective_from) AS pick,
                   min(effective_from) FILTER (WHERE effective_from > now()) OVER plan
                       AS next_change
            FROM billing_rate_plans
            WHERE CAST(:tenant AS text) IS NULL OR tenant_id = :tenant OR tenant_id IS NULL
            WINDOW plan AS (PARTITION BY tenant_id, plan_code)
        )
        SELECT tenant_id, plan_code, name, is_active, rate_plan_id, effective_from, versions,
               next_change
        FROM versions WHERE pick = 1
        ORDER BY tenant_id NULLS FIRST, plan_code, rate_plan_id
        """
    )
    with database_errors(), platform.maintenance_engine.connect() as connection:
        if tenant_id is not None:
            get_tenant(connection, tenant_id)
        rows = connection.execute(query, {"tenant": tenant_id}).mappings().all()
    return [PlanSummary.model_validate(dict(row)) for row in rows]


def show_plan(platform: Platform, plan_code: str, tenant_id: str | None = None) -> list[PlanView]:
    """Every version of a plan, oldest first. ``PlanNotFoundError`` when there is none."""
    with database_errors(), platform.maintenance_engine.connect() as connection:
        return [_view(version) for version in plan_versions(connection, tenant_id, plan_code)]


def create_plan(platform: Platform, draft: PlanDraft) -> PlanView:
    """Write a new plan's first version. ``ConflictError`` when the plan exists,
    ``UnknownTenantError`` for an unknown tenant, ``UsageError`` for a value a plan may not
    hold (a negative or malformed rate, an unknown dimension, an early effective time)."""
    version = PlanVersion(
        tenant_id=draft.tenant_id,
        plan_code=draft.plan_code,
        name=draft.name,
        rates=tuple(_rate(rate) for rate in draft.rates),
        multipliers=tuple(_multiplier(item) for item in draft.multipliers),
    )
    version = replace(version, **_given(draft))
    with database_errors(), platform.maintenance_engine.begin() as connection:
        if draft.tenant_id is not None:
            get_tenant(connection, draft.tenant_id)
        _lock(connection, draft.tenant_id, draft.plan_code)
        exists = connection.execute(
            select(func.count()).where(
                billing_rate_plans.c.tenant_id.is_(None)
                if draft.tenant_id is None
                else billing_rate_plans.c.tenant_id == draft.tenant_id,
                billing_rate_plans.c.plan_code == draft.plan_code,
            )
        ).scalar_one()
        if exists:
            raise ConflictError(
                f"plan {draft.plan_code!r} exists; change it with `billing plans update`"
            )
        return _write(
            connection, version, _effective_from(connection, platform, draft.effective_from)
        )


def change_plan(
    platform: Platform, plan_code: str, change: PlanChange, tenant_id: str | None = None
) -> PlanView:
    """Write a new version of a plan: its newest version with ``change`` applied.

    ``PlanNotFoundError`` for an unknown plan; ``UsageError`` for an operation or multiplier
    to remove that the plan does not have, or a value a plan may not hold."""
    with database_errors(), platform.maintenance_engine.begin() as connection:
        _lock(connection, tenant_id, plan_code)
        base = plan_versions(connection, tenant_id, plan_code)[-1]
        rates = {rate.operation.lower(): rate for rate in base.rates}
        for operation in change.remove_rates:
            if rates.pop(operation.lower(), None) is None:
                raise UsageError(f"plan {plan_code!r} has no rate for operation {operation!r}")
        rates.update((rate.operation.lower(), _rate(rate)) for rate in change.rates)
        factors = {(m.dimension, m.key.lower()): m for m in base.multipliers}
        for gone in change.remove_multipliers:
            if factors.pop((gone.dimension, gone.key.lower()), None) is None:
                raise UsageError(
                    f"plan {plan_code!r} has no {gone.dimension} multiplier {gone.key!r}"
                )
        factors.update(((m.dimension, m.key.lower()), _multiplier(m)) for m in change.multipliers)
        version = replace(
            base,
            rates=tuple(rates.values()),
            multipliers=tuple(factors.values()),
            **_given(change),
        )
        return _write(
            connection, version, _effective_from(connection, platform, change.effective_from)
        )


def set_plan_active(
    platform: Platform,
    plan_code: str,
    active: bool,
    *,
    tenant_id: str | None = None,
    effective_from: datetime | None = None,
) -> tuple[PlanView, bool]:
    """Activate or deactivate a plan from ``effective_from`` on (a new version); the newest
    version and whether one was written (False: it is in that state already)."""
    with database_errors(), platform.maintenance_engine.begin() as connection:
        _lock(connection, tenant_id, plan_code)
        base = plan_versions(connection, tenant_id, plan_code)[-1]
        # Checked first, so a bad effective_from is refused whether or not a version is due.
        effective = _effective_from(connection, platform, effective_from)
        if base.is_active == active:
            return _view(base), False
        return _write(connection, replace(base, is_active=active), effective), True


def invoice(
    platform: Platform, tenant_id: str, period: str, *, across_tenants: bool = False
) -> Invoice:
    """The invoice preview of ``tenant_id`` for ``period`` (``YYYY-MM``).

    ``InvalidPeriodError`` (a ``UsageError``) for another shape or a future month;
    ``UnknownTenantError`` for an unknown tenant. ``across_tenants`` (an admin's or the
    CLI's preview) reads on the maintenance engine, otherwise on ``platform.engine``, bound
    to the caller's tenant."""
    month = parse_period(period)
    engine = platform.maintenance_engine if across_tenants else platform.engine
    settings = platform.settings.billing
    with (
        database_errors(),
        engine.connect().execution_options(isolation_level="REPEATABLE READ") as connection,
        connection.begin(),
    ):
        get_tenant(connection, tenant_id)
        return invoice_preview(
            connection,
            tenant_id=tenant_id,
            period=month,
            currency=settings.currency,
            fallback=settings_version(settings),
        )


def _given(fields: _PlanFields) -> dict[str, Any]:
    names = set(_PlanFields.model_fields) - {"effective_from"}
    return {
        name: getattr(fields, name)
        for name in sorted(names)
        if name in fields.model_fields_set and getattr(fields, name) is not None
    }


def _rate(rate: RateInput) -> OperationRate:
    return OperationRate(rate.operation, rate.rate, rate.unit_of_measure, rate.category)


def _multiplier(item: MultiplierInput) -> PlanMultiplier:
    return PlanMultiplier(item.dimension, item.key, item.multiplier)


def _lock(connection: Connection, tenant_id: str | None, plan_code: str) -> None:
    # One change of a plan at a time: each bases its version on the newest one.
    connection.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
        {"key": f"hartonomous.plan:{tenant_id or ''}:{plan_code}"},
    )


def _write(connection: Connection, version: PlanVersion, effective: datetime) -> PlanView:
    """Write ``version`` from ``effective`` on (checked by ``_effective_from`` already: checking
    it again here would compare it with a later clock and refuse the default as too early)."""
    written = write_version(connection, version, effective)
    assert written.rate_plan_id is not None
    # Read back: the stored values, at the columns' scale.
    return _view(version_by_id(connection, written.rate_plan_id))


def _effective_from(
    connection: Connection, platform: Platform, effective_from: datetime | None
) -> datetime:
    """``effective_from`` in UTC (default: the earliest allowed); ``UsageError`` without an
    offset, out of range, or earlier than now + `[billing] plan_cache_absolute_seconds`."""
    lead = platform.settings.billing.plan_cache_absolute_seconds
    earliest: datetime = connection.execute(
        text("SELECT clock_timestamp() + make_interval(secs => :lead)"), {"lead": lead}
    ).scalar_one()
    if effective_from is None:
        effective_from = earliest
    elif effective_from.tzinfo is None:
        raise UsageError(f"effective_from {effective_from.isoformat()} needs a UTC offset")
    else:
        try:
            effective_from = in_utc(effective_from)
        except ValueError as exc:
            raise UsageError(f"effective_from {exc}") from None
    if effective_from < earliest:
        raise UsageError(
            f"effective_from {effective_from.isoformat()} is too early: a plan change takes "
            f"effect at least {lead:g} s ahead ([billing] plan_cache_absolute_seconds, how long "
            f"a worker may price with the plan it read), not before {earliest.isoformat()}"
        )
    return effective_from


def _view(version: PlanVersion) -> PlanView:
    return PlanView.model_validate(version, from_attributes=True)
