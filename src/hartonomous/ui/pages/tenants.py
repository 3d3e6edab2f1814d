"""Tenants and keys (admin): create and disable tenants, add principals, issue keys (the
secret shown once) and revoke them. Every change goes through ``services.tenancy``; a refusal
(invalid id, one that exists, an unknown principal) is shown beside the field it concerns."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from hartonomous.errors import ConflictError, UsageError
from hartonomous.security.keys import InvalidKeyLabelError, IssuedKey
from hartonomous.security.principals import UnknownPrincipalError, display_name_problem
from hartonomous.security.roles import Role
from hartonomous.security.tenants import TenantState, validate_tenant_id
from hartonomous.services import tenancy
from hartonomous.ui.access import ADMIN, Viewer, checked_form, flashes_of, platform_of
from hartonomous.ui.rendering import render

router = APIRouter(prefix="/tenants")
TenantId = Annotated[str, Path(min_length=1, max_length=128)]
_PAGE = 100


async def _tenants_page(request: Request, cursor: str | None = None, **extra: Any) -> Response:
    page = await run_in_threadpool(
        tenancy.list_tenants, platform_of(request), limit=_PAGE, cursor=cursor
    )
    values = {"page": page, "errors": {}, "values": {}, **extra}
    return render(request, "tenants.html", values, status_code=400 if values["errors"] else 200)


async def _tenant_page(request: Request, tenant_id: str, **extra: Any) -> Response:
    platform = platform_of(request)
    tenant = await run_in_threadpool(tenancy.show_tenant, platform, tenant_id)
    principals = await run_in_threadpool(tenancy.list_principals, platform, tenant_id, limit=500)
    keys = await run_in_threadpool(tenancy.list_keys, platform, tenant_id, limit=500)
    values = {
        "tenant": tenant,
        "principals": principals.items,
        "keys": keys.items,
        "roles": [role.value for role in Role],
        "errors": {},
        "values": {},
        "issued": None,
        **extra,
    }
    response = render(request, "tenant.html", values, status_code=400 if values["errors"] else 200)
    if values["issued"] is not None:
        response.headers["Cache-Control"] = "no-store"  # the secret is shown this once
    return response


@router.get("")
async def tenants(
    request: Request,
    seen: Viewer = ADMIN,
    cursor: Annotated[str | None, Query(max_length=4096)] = None,
) -> Response:
    return await _tenants_page(request, cursor)


@router.post("")
async def create_tenant(request: Request, seen: Viewer = ADMIN) -> Response:
    form = await checked_form(request, seen)
    tenant_id = str(form.get("tenant_id") or "").strip()
    display_name = str(form.get("display_name") or "").strip() or None
    values = {"tenant_id": tenant_id, "display_name": display_name or ""}
    # Each refusal beside its field, by the service's own rules (security.tenants/principals).
    errors: dict[str, str] = {}
    try:
        if not tenant_id:
            raise UsageError("enter a tenant id")
        validate_tenant_id(tenant_id)
    except UsageError as exc:
        errors["tenant_id"] = str(exc)
    problem = display_name_problem(display_name) if display_name is not None else None
    if problem:
        errors["display_name"] = problem
    if not errors:
        try:
            await run_in_threadpool(
                tenancy.create_tenant, platform_of(request), tenant_id, display_name
            )
        except ConflictError as exc:
            errors["tenant_id"] = str(exc)
    if errors:
        return await _tenants_page(request, errors=errors, values=values)
    return RedirectResponse(f"/ui/tenants/{quote(tenant_id)}", status_code=303)


@router.get("/{tenant_id}")
async def tenant(
    request: Request,
    tenant_id: TenantId,
    seen: Viewer = ADMIN,
    issued: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """The tenant's page; ``issued`` names the flash of a key just issued (shown this once)."""
    if issued is None:
        return await _tenant_page(request, tenant_id)
    shown = flashes_of(request).take(seen.session, issued)
    if isinstance(shown, IssuedKey) and shown.key.tenant_id == tenant_id:
        return await _tenant_page(request, tenant_id, issued=shown)
    return await _tenant_page(
        request,
        tenant_id,
        notice="The new key's secret was shown once and is not shown again: "
        "if it was not copied, revoke that key and issue another.",
    )


@router.post("/{tenant_id}/state")
async def set_state(request: Request, tenant_id: TenantId, seen: Viewer = ADMIN) -> Response:
    form = await checked_form(request, seen)
    wanted = form.get("state")
    if wanted not in ("active", "disabled"):
        raise UsageError("state must be active or disabled")
    state: TenantState = "active" if wanted == "active" else "disabled"
    await run_in_threadpool(tenancy.set_tenant_state, platform_of(request), tenant_id, state)
    return RedirectResponse(f"/ui/tenants/{tenant_id}", status_code=303)


@router.post("/{tenant_id}/principals")
async def create_principal(request: Request, tenant_id: TenantId, seen: Viewer = ADMIN) -> Response:
    form = await checked_form(request, seen)
    principal_id = str(form.get("principal_id") or "").strip()
    role = str(form.get("role") or "")
    values = {"principal_id": principal_id, "role": role}
    if role not in {member.value for member in Role}:
        return await _tenant_page(
            request,
            tenant_id,
            errors={"role": f"role must be one of {', '.join(r.value for r in Role)}"},
            values=values,
        )
    try:
        if not principal_id:
            raise UsageError("enter a principal id")
        await run_in_threadpool(
            lambda: tenancy.create_principal(
                platform_of(request), tenant_id, principal_id, role=Role(role)
            )
        )
    except (UsageError, ConflictError) as exc:
        return await _tenant_page(
            request, tenant_id, errors={"principal_id": str(exc)}, values=values
        )
    return RedirectResponse(f"/ui/tenants/{tenant_id}", status_code=303)


@router.post("/{tenant_id}/keys")
async def issue_key(request: Request, tenant_id: TenantId, seen: Viewer = ADMIN) -> Response:
    """Issues a key; 303 to the tenant's page, which shows its token once (``ui.flashes``:
    a reload shows it no more and issues nothing)."""
    form = await checked_form(request, seen)
    principal_id = str(form.get("key_principal_id") or "").strip()
    label = str(form.get("label") or "").strip()
    values = {"key_principal_id": principal_id, "label": label}
    try:
        if not principal_id:
            raise UsageError("choose the principal the key is for")
        issued = await run_in_threadpool(
            lambda: tenancy.create_key(platform_of(request), tenant_id, principal_id, label=label)
        )
    except (UsageError, UnknownPrincipalError) as exc:
        field = "label" if isinstance(exc, InvalidKeyLabelError) else "key_principal_id"
        return await _tenant_page(request, tenant_id, errors={field: str(exc)}, values=values)
    flash = flashes_of(request).put(seen.session, issued)
    return RedirectResponse(f"/ui/tenants/{quote(tenant_id)}?issued={flash}", status_code=303)


@router.post("/{tenant_id}/keys/{key_id}/revoke")
async def revoke_key(
    request: Request,
    tenant_id: TenantId,
    key_id: Annotated[str, Path(min_length=1, max_length=64)],
    seen: Viewer = ADMIN,
) -> Response:
    await checked_form(request, seen)
    try:
        await run_in_threadpool(tenancy.revoke_key, platform_of(request), tenant_id, key_id)
    except ConflictError as exc:  # already revoked: say so on the page
        return await _tenant_page(request, tenant_id, notice=str(exc))
    return RedirectResponse(f"/ui/tenants/{tenant_id}", status_code=303)
