"""`GET /v1/ledger/entries`: the usage ledger, newest first, filtered, cursor-paginated;
`GET /v1/ledger/report`: billed totals grouped by tenant, principal, operation, day or month;
`POST /v1/ledger/periods/{period}/close` (admin): close a billing period.

A data scientist sees its own tenant's entries (``tenant_id`` absent or its own; another
tenant's is 404, as if it did not exist); an admin sees every tenant's, or one tenant's with
``tenant_id`` (docs/api.md, "Ledger").
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from hartonomous.api.auth import Caller, platform_of, requires
from hartonomous.api.fields import ASCII_INTEGER, Day, Period, TenantIdQuery, Timestamp
from hartonomous.api.routing import api_router
from hartonomous.errors import NotFoundError
from hartonomous.security.roles import Role
from hartonomous.services.ledger import (
    LedgerEntry,
    LedgerFilter,
    ReportGrouping,
    ledger_report,
    list_ledger_entries,
)
from hartonomous.services.ledger_close import close_ledger_period

router = api_router(prefix="/v1/ledger", tags=["ledger"])

# PostgreSQL text cannot hold NUL: refused here, as a problem naming the parameter.
Name = Annotated[str | None, Query(min_length=1, max_length=256, pattern=r"^[^\x00]+$")]


class LedgerPage(BaseModel):
    items: list[LedgerEntry]
    next_cursor: str | None


@router.get("/entries")
def entries(
    request: Request,
    *,
    caller: Annotated[Caller, Depends(requires(Role.DATA_SCIENTIST))],
    tenant_id: TenantIdQuery = None,
    principal_id: Name = None,
    operation: Name = None,
    message_type: Name = None,
    recorded_since: Annotated[Timestamp | None, Query()] = None,
    recorded_before: Annotated[Timestamp | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500), ASCII_INTEGER] = 50,
    cursor: Annotated[str | None, Query(max_length=4096)] = None,
) -> LedgerPage:
    """Billed events newest first; money as decimal strings (never floats)."""
    if not caller.role.includes(Role.ADMIN):
        if tenant_id not in (None, caller.tenant_id):
            raise NotFoundError(f"tenant {tenant_id!r} not found")
        tenant_id = caller.tenant_id
    where = LedgerFilter(
        tenant_id=tenant_id,
        principal_id=principal_id,
        operation=operation,
        message_type=message_type,
        recorded_since=recorded_since,
        recorded_before=recorded_before,
    )
    page = list_ledger_entries(
        platform_of(request),
        where,
        limit=limit,
        cursor=cursor,
        across_tenants=caller.role.includes(Role.ADMIN),
    )
    return LedgerPage(items=list(page.items), next_cursor=page.next_cursor)


class ReportLine(BaseModel):
    """One group: its keys (those of ``group_by``) and its totals as decimal strings."""

    model_config = {"extra": "allow"}

    rows: int
    units: str = Field(description="Sum of units, six decimals")
    total_dcu: str
    total_cost: str


class UsageReportModel(BaseModel):
    since: date
    until: date
    tenant_id: str | None
    group_by: list[ReportGrouping]
    rows: list[ReportLine]
    total: ReportLine


@router.get(
    "/report",
    response_model=UsageReportModel,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
def report(
    request: Request,
    *,
    caller: Annotated[Caller, Depends(requires(Role.DATA_SCIENTIST))],
    since: Annotated[Day, Query(description="First day (UTC), included")],
    until: Annotated[Day, Query(description="Last day, excluded")],
    group_by: Annotated[list[ReportGrouping] | None, Query(max_length=5)] = None,
    tenant_id: TenantIdQuery = None,
    format: Annotated[str, Query(pattern="^(json|csv)$")] = "json",
) -> object:
    """Totals from the ledger's rollup, exact: each line's and the total equal the sums of the
    rows they cover. A data scientist's report covers its own tenant; an admin's every tenant
    or ``tenant_id``'s."""
    if not caller.role.includes(Role.ADMIN):
        if tenant_id not in (None, caller.tenant_id):
            raise NotFoundError(f"tenant {tenant_id!r} not found")
        tenant_id = caller.tenant_id
    usage = ledger_report(
        platform_of(request),
        since=since,
        until=until,
        group_by=tuple(group_by or ()),
        tenant_id=tenant_id,
        across_tenants=caller.role.includes(Role.ADMIN),
    )
    if format == "csv":
        return PlainTextResponse(usage.as_csv(), media_type="text/csv")
    return usage.as_json()


class ClosedPeriodModel(BaseModel):
    period: str = Field(description="YYYY-MM")
    checksum: str = Field(description="SHA-256 (hex) of the period's totals (docs/billing.md)")
    rows: int
    total_cost: str = Field(description="Sum of the period's costs, six decimals")
    closed_at: datetime
    closed_now: bool = Field(description="false: it was closed before (same checksum)")


@router.post("/periods/{period}/close", response_model=ClosedPeriodModel)
def close(
    request: Request,
    period: Period,
    *,
    caller: Annotated[Caller, Depends(requires(Role.ADMIN))],
) -> ClosedPeriodModel:
    """Freeze a period with the checksum of its totals (idempotent). 409 while events of the
    period wait on the broker (the detail names how many); 400 for the current or a future
    period. Late events for it are billed as adjustments in the first open period."""
    closed = close_ledger_period(platform_of(request), period)
    return ClosedPeriodModel.model_validate(closed.as_json())
