"""Who the caller is, read back through the caller's own tenant (`GET /v1/me`)."""

from __future__ import annotations

from pydantic import BaseModel
from sqlalchemy import select

from hartonomous.db.tables import principals, tenants
from hartonomous.errors import NotFoundError
from hartonomous.security.authentication import Caller
from hartonomous.services.platform import Platform

__all__ = ["Identity", "identify"]


class Identity(BaseModel):
    """The authenticated caller: tenant and principal (ids and display names), role, key id."""

    tenant_id: str
    tenant_name: str
    principal_id: str
    principal_name: str
    role: str
    key_id: str


def identify(platform: Platform, caller: Caller) -> Identity:
    """The caller's tenant and principal as stored, read on ``platform.engine``.

    In the API that engine is bound to the caller's tenant by row-level security, so this also
    shows the binding at work. Raises ``NotFoundError`` when the rows are not visible (no
    tenant bound, or a principal removed since the key was checked).
    """
    with platform.engine.connect() as connection:
        row = connection.execute(
            select(tenants.c.display_name.label("tenant_name"), principals.c.display_name)
            .join(principals, principals.c.tenant_id == tenants.c.tenant_id)
            .where(
                tenants.c.tenant_id == caller.tenant_id,
                principals.c.principal_id == caller.principal_id,
            )
        ).one_or_none()
    if row is None:
        raise NotFoundError(f"principal {caller.principal_id!r} of tenant {caller.tenant_id!r}")
    return Identity(
        tenant_id=caller.tenant_id,
        tenant_name=row.tenant_name,
        principal_id=caller.principal_id,
        principal_name=row.display_name,
        role=caller.role.value,
        key_id=caller.key_id,
    )
