"""`/v1/billing/plans...`: the rate-plan catalogue (admin only; docs/api.md, "Billing");
`GET /v1/billing/invoice`: a tenant's invoice preview for a period (its own; an admin names
any tenant)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Depends, Path, Query, Request, Response
from pydantic import BaseModel

from hartonomous.api.auth import Caller, platform_of, requires
from hartonomous.api.fields import PERIOD_PATTERN, TenantIdQuery, Timestamp
from hartonomous.api.routing import api_router
from hartonomous.errors import NotFoundError
from hartonomous.request_bodies import RequestBody
from hartonomous.security.roles import Role
from hartonomous.services.billing import (
    PlanChange,
    PlanDraft,
    PlanSummary,
    PlanView,
    change_plan,
    create_plan,
    invoice,
    list_plans,
    set_plan_active,
    show_plan,
)

router = api_router(prefix="/v1/billing", tags=["billing"])

PlanCode = Annotated[str, Path(pattern=r"^[a-z0-9_]{1,63}$")]
Admin = Annotated[Caller, Depends(requires(Role.ADMIN))]


class PlanList(BaseModel):
    items: list[PlanSummary]


class PlanVersions(BaseModel):
    versions: list[PlanView]


class ActivationRequest(RequestBody):
    effective_from: Timestamp | None = None


class ActivationResult(BaseModel):
    plan: PlanView
    changed: bool


class InvoicePlan(BaseModel):
    plan_code: str
    name: str
    effective_from: str | None
    source: str


class InvoiceLineModel(BaseModel):
    """A line; figures are decimal strings (six places; ``amount`` in cents)."""

    kind: str
    description: str
    unit: str
    operation: str | None
    plan_code: str | None
    plan_effective_from: str | None
    quantity: str
    included: str | None
    billable: str
    rate: str | None
    multiplier: str | None
    dcu: str | None
    unit_price: str
    amount: str


class InvoiceModel(BaseModel):
    tenant_id: str
    period: str
    currency: str
    plan: InvoicePlan
    lines: list[InvoiceLineModel]
    total: str


@router.get("/plans")
def plans(request: Request, *, caller: Admin, tenant_id: TenantIdQuery = None) -> PlanList:
    """Every plan with its version in force now (``tenant_id``: that tenant's and the global
    ones)."""
    return PlanList(items=list_plans(platform_of(request), tenant_id))


@router.post("/plans", status_code=201)
def create(request: Request, draft: PlanDraft, *, caller: Admin) -> PlanView:
    """Create a plan: its first version, effective from ``effective_from`` (default and
    earliest: now + the plan cache's absolute interval)."""
    return create_plan(platform_of(request), draft)


@router.get("/plans/{plan_code}")
def show(
    request: Request, plan_code: PlanCode, *, caller: Admin, tenant_id: TenantIdQuery = None
) -> PlanVersions:
    """Every version of a plan, oldest first."""
    return PlanVersions(versions=show_plan(platform_of(request), plan_code, tenant_id))


@router.patch("/plans/{plan_code}")
def update(
    request: Request,
    plan_code: PlanCode,
    change: PlanChange,
    *,
    caller: Admin,
    tenant_id: TenantIdQuery = None,
) -> PlanView:
    """Write a new version of a plan: the newest with ``change`` applied."""
    return change_plan(platform_of(request), plan_code, change, tenant_id)


@router.post("/plans/{plan_code}/activate")
def activate(
    request: Request,
    plan_code: PlanCode,
    *,
    caller: Admin,
    body: ActivationRequest | None = None,
    tenant_id: TenantIdQuery = None,
) -> ActivationResult:
    """Make a plan active from ``effective_from`` (a new version unless it is already)."""
    return _set(request, plan_code, True, body, tenant_id)


@router.post("/plans/{plan_code}/deactivate")
def deactivate(
    request: Request,
    plan_code: PlanCode,
    *,
    caller: Admin,
    body: ActivationRequest | None = None,
    tenant_id: TenantIdQuery = None,
) -> ActivationResult:
    """Make a plan inactive from ``effective_from`` (a new version unless it is already)."""
    return _set(request, plan_code, False, body, tenant_id)


def _set(
    request: Request,
    plan_code: str,
    active: bool,
    body: ActivationRequest | None,
    tenant_id: str | None,
) -> ActivationResult:
    effective: datetime | None = body.effective_from if body is not None else None
    plan, changed = set_plan_active(
        platform_of(request), plan_code, active, tenant_id=tenant_id, effective_from=effective
    )
    return ActivationResult(plan=plan, changed=changed)


@router.get(
    "/invoice",
    response_model=InvoiceModel,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
def invoice_preview(
    request: Request,
    *,
    caller: Annotated[Caller, Depends(requires(Role.USER))],
    period: Annotated[str, Query(pattern=PERIOD_PATTERN, description="A month: YYYY-MM")],
    tenant_id: TenantIdQuery = None,
    format: Annotated[str, Query(pattern="^(json|csv)$")] = "json",
) -> Response:
    """The invoice preview for ``period`` (``YYYY-MM``): the caller's tenant's, or, for an
    admin, ``tenant_id``'s. The same rows give the same bytes (sorted keys)."""
    admin = caller.role.includes(Role.ADMIN)
    if tenant_id is None:
        tenant_id = caller.tenant_id
    elif not admin and tenant_id != caller.tenant_id:
        raise NotFoundError(f"tenant {tenant_id!r} not found")
    preview = invoice(platform_of(request), tenant_id, period, across_tenants=admin)
    if format == "csv":
        return Response(preview.to_csv(), media_type="text/csv")
    return Response(preview.to_json(), media_type="application/json")
