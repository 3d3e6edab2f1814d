"""`GET /v1/me`: the caller behind the bearer key (any role)."""

from __future__ import annotations

from fastapi import Depends, Request

from hartonomous.api.auth import Caller, platform_of, requires
from hartonomous.api.routing import api_router
from hartonomous.security.roles import Role
from hartonomous.services.identity import Identity, identify

router = api_router(prefix="/v1", tags=["identity"])


@router.get("/me")
def me(request: Request, caller: Caller = Depends(requires(Role.USER))) -> Identity:  # noqa: B008
    """The caller's tenant, principal, role and key id, read through its own tenant."""
    return identify(platform_of(request), caller)
