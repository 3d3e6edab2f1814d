"""`/v1/tenants`: tenants, their principals and API keys, for administrators (docs/security.md).

Thin: each route calls one ``services.tenancy`` function. An unknown tenant, principal or key
in a path is a 404 problem naming it; a key's token appears only in the answer that creates it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import Depends, Query, status
from pydantic import BaseModel, ConfigDict, Field

from hartonomous.api.auth import Caller, platform_of, requires
from hartonomous.api.fields import (
    ASCII_INTEGER,
    KeyId,
    PrincipalId,
    StrictFloat,
    TenantId,
    Timestamp,
)
from hartonomous.api.routing import api_router
from hartonomous.db.tables.base import TENANT_ID_LENGTH
from hartonomous.request_bodies import RequestBody
from hartonomous.security.roles import Role
from hartonomous.services import Platform, tenancy

router = api_router(prefix="/v1/tenants", tags=["tenants"])

Admin = Annotated[Caller, Depends(requires(Role.ADMIN))]
PlatformOf = Annotated[Platform, Depends(platform_of)]
Limit = Annotated[
    int, Query(ge=1, le=tenancy.MAX_LIMIT, description="Items per page"), ASCII_INTEGER
]
Cursor = Annotated[
    str | None, Query(max_length=4096, description="`next_cursor` of the previous page")
]
State = Literal["active", "disabled"]


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class TenantOut(_Out):
    tenant_id: str
    display_name: str
    state: State
    created_at: datetime
    updated_at: datetime
    holdings: int
    principals: int


class TenantPage(BaseModel):
    items: list[TenantOut]
    next_cursor: str | None


class TenantCreate(RequestBody):
    # A new id's rules (pattern, case) are the service's: 400 naming the rule, as a new
    # principal id's are (docs/api.md, "Errors").
    tenant_id: str = Field(min_length=1, max_length=TENANT_ID_LENGTH)
    display_name: str | None = Field(default=None, min_length=1, max_length=256)


class TenantUpdate(RequestBody):
    state: State


class PrincipalOut(_Out):
    tenant_id: str
    principal_id: str
    display_name: str
    kind: Literal["user", "service"]
    role: Role
    state: State
    created_at: datetime
    updated_at: datetime
    active_keys: int


class PrincipalPage(BaseModel):
    items: list[PrincipalOut]
    next_cursor: str | None


class PrincipalCreate(RequestBody):
    principal_id: str = Field(min_length=1, max_length=256)
    role: Role = Role.USER
    display_name: str | None = Field(default=None, min_length=1, max_length=256)
    kind: Literal["user", "service"] = "user"


class PrincipalUpdate(RequestBody):
    state: State | None = None
    role: Role | None = None


class KeyOut(_Out):
    """A key without its secret or hash."""

    key_id: str
    tenant_id: str
    principal_id: str
    label: str
    state: Literal["active", "revoked", "expired"]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class IssuedKeyOut(BaseModel):
    key: KeyOut
    token: str = Field(description="`hk_<key id>_<secret>`: shown in this answer only")


class KeyPage(BaseModel):
    items: list[KeyOut]
    next_cursor: str | None


class KeyCreate(RequestBody):
    principal_id: str = Field(min_length=1, max_length=256)
    label: str = Field(default="", max_length=128)
    expires_at: Timestamp | None = None


class KeyRevoke(RequestBody):
    grace_seconds: StrictFloat = Field(default=0, ge=0, le=31_536_000)


class KeyRotate(RequestBody):
    grace_seconds: StrictFloat = Field(default=0, ge=0, le=31_536_000)
    expires_at: Timestamp | None = None


class RotatedKeyOut(BaseModel):
    new: IssuedKeyOut
    old: KeyOut


@router.post("", status_code=status.HTTP_201_CREATED)
def create_tenant(body: TenantCreate, caller: Admin, platform: PlatformOf) -> TenantOut:
    """Create an active tenant."""
    return TenantOut.model_validate(
        tenancy.create_tenant(platform, body.tenant_id, body.display_name)
    )


@router.get("")
def list_tenants(
    caller: Admin, platform: PlatformOf, limit: Limit = tenancy.DEFAULT_LIMIT, cursor: Cursor = None
) -> TenantPage:
    """Tenants by id, with their holding and principal counts."""
    page = tenancy.list_tenants(platform, limit=limit, cursor=cursor)
    return TenantPage(
        items=[TenantOut.model_validate(t) for t in page.items], next_cursor=page.next_cursor
    )


@router.get("/{tenant_id}")
def show_tenant(tenant_id: TenantId, caller: Admin, platform: PlatformOf) -> TenantOut:
    """One tenant."""
    return TenantOut.model_validate(tenancy.show_tenant(platform, tenant_id))


@router.patch("/{tenant_id}")
def update_tenant(
    tenant_id: TenantId, body: TenantUpdate, caller: Admin, platform: PlatformOf
) -> TenantOut:
    """Disable (its keys, ingestion and search stop at once) or enable a tenant."""
    return TenantOut.model_validate(tenancy.set_tenant_state(platform, tenant_id, body.state))


@router.post("/{tenant_id}/principals", status_code=status.HTTP_201_CREATED)
def create_principal(
    tenant_id: TenantId, body: PrincipalCreate, caller: Admin, platform: PlatformOf
) -> PrincipalOut:
    """Create an active principal with a role."""
    principal = tenancy.create_principal(
        platform,
        tenant_id,
        body.principal_id,
        role=body.role,
        display_name=body.display_name,
        kind=body.kind,
    )
    return PrincipalOut.model_validate(principal)


@router.get("/{tenant_id}/principals")
def list_principals(
    tenant_id: TenantId,
    caller: Admin,
    platform: PlatformOf,
    limit: Limit = tenancy.DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> PrincipalPage:
    """The tenant's principals by id."""
    page = tenancy.list_principals(platform, tenant_id, limit=limit, cursor=cursor)
    return PrincipalPage(
        items=[PrincipalOut.model_validate(p) for p in page.items], next_cursor=page.next_cursor
    )


@router.get("/{tenant_id}/principals/{principal_id}")
def show_principal(
    tenant_id: TenantId, principal_id: PrincipalId, caller: Admin, platform: PlatformOf
) -> PrincipalOut:
    """One principal."""
    return PrincipalOut.model_validate(tenancy.show_principal(platform, tenant_id, principal_id))


@router.patch("/{tenant_id}/principals/{principal_id}")
def update_principal(
    tenant_id: TenantId,
    principal_id: PrincipalId,
    body: PrincipalUpdate,
    caller: Admin,
    platform: PlatformOf,
) -> PrincipalOut:
    """Disable or enable a principal (its keys stop at once), or change its role."""
    principal = tenancy.update_principal(
        platform, tenant_id, principal_id, state=body.state, role=body.role
    )
    return PrincipalOut.model_validate(principal)


@router.post("/{tenant_id}/keys", status_code=status.HTTP_201_CREATED)
def create_key(
    tenant_id: TenantId, body: KeyCreate, caller: Admin, platform: PlatformOf
) -> IssuedKeyOut:
    """Issue a key to a principal: the token is in this answer and stored nowhere."""
    issued = tenancy.create_key(
        platform, tenant_id, body.principal_id, label=body.label, expires_at=body.expires_at
    )
    return IssuedKeyOut(key=KeyOut.model_validate(issued.key), token=issued.token)


@router.get("/{tenant_id}/keys")
def list_keys(  # noqa: PLR0917 - FastAPI passes parameters by keyword
    tenant_id: TenantId,
    caller: Admin,
    platform: PlatformOf,
    principal_id: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    limit: Limit = tenancy.DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> KeyPage:
    """The tenant's keys, oldest first, never with a secret or hash."""
    page = tenancy.list_keys(
        platform, tenant_id, principal_id=principal_id, limit=limit, cursor=cursor
    )
    return KeyPage(
        items=[KeyOut.model_validate(k) for k in page.items], next_cursor=page.next_cursor
    )


@router.post("/{tenant_id}/keys/{key_id}/revoke")
def revoke_key(
    tenant_id: TenantId,
    key_id: KeyId,
    caller: Admin,
    platform: PlatformOf,
    body: KeyRevoke | None = None,
) -> KeyOut:
    """Revoke a key now, or after a grace period."""
    grace = (body or KeyRevoke()).grace_seconds
    return KeyOut.model_validate(
        tenancy.revoke_key(platform, tenant_id, key_id, grace_seconds=grace)
    )


@router.post("/{tenant_id}/keys/{key_id}/rotate")
def rotate_key(
    tenant_id: TenantId,
    key_id: KeyId,
    caller: Admin,
    platform: PlatformOf,
    body: KeyRotate | None = None,
) -> RotatedKeyOut:
    """A new key for the same principal; the old one revoked now or after a grace period."""
    options = body or KeyRotate()
    rotated = tenancy.rotate_key(
        platform,
        tenant_id,
        key_id,
        grace_seconds=options.grace_seconds,
        expires_at=options.expires_at,
    )
    return RotatedKeyOut(
        new=IssuedKeyOut(key=KeyOut.model_validate(rotated.new.key), token=rotated.new.token),
        old=KeyOut.model_validate(rotated.old),
    )
