"""`GET /v1/whoami`: who the bearer key authenticates as (check a key before using it)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from hartonomous.api.auth import Caller, requires
from hartonomous.security.roles import Role

router = APIRouter(prefix="/v1", tags=["authentication"])


class Identity(BaseModel):
    """The caller behind a key: its tenant, principal, role and key id (never the secret)."""

    tenant_id: str
    principal_id: str
    role: Role = Field(description="`user`, `data-scientist` or `admin` (docs/security.md)")
    key_id: str


@router.get("/whoami")
def whoami(caller: Caller = Depends(requires(Role.USER))) -> Identity:  # noqa: B008
    return Identity(
        tenant_id=caller.tenant_id,
        principal_id=caller.principal_id,
        role=caller.role,
        key_id=caller.key_id,
    )
