"""Route dependencies: authenticate the bearer key, then require a role (docs/security.md).

Every `/v1` route declares ``caller: Caller = Depends(requires(Role.X))``: a request without a
valid key is answered 401 (``WWW-Authenticate: Bearer``), one whose role does not include X 403.
Authenticating binds the caller's tenant (``hartonomous.db.tenant_context``) for the rest
of the request, so every transaction on ``platform.engine`` sees that tenant's rows only
(docs/security.md, "Isolation").
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from hartonomous.db.tenant_context import bind_tenant
from hartonomous.errors import ForbiddenError, NotAuthenticatedError
from hartonomous.security.authentication import Caller, authenticate
from hartonomous.security.roles import Role
from hartonomous.services import Platform

__all__ = ["Caller", "authenticated", "platform_of", "requires"]

_bearer = HTTPBearer(auto_error=False, description="An API key: `hk_<key id>_<secret>`")


def platform_of(request: Request) -> Platform:
    """The ``Platform`` the app was created with."""
    platform: Platform = request.app.state.platform
    return platform


async def authenticated(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
) -> Caller:
    """The caller behind the request's bearer key; ``NotAuthenticatedError`` (401) otherwise.

    Async on purpose: FastAPI runs a sync dependency in a worker thread with a *copy* of the
    request's context, so a tenant bound there would not reach the endpoint. Bound here, in the
    request's own task, it reaches the endpoint (and the thread a sync endpoint runs in). The
    key is looked up on the maintenance engine: no tenant is known before it is.
    """
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise NotAuthenticatedError("send an API key as `Authorization: Bearer hk_…`")
    engine = platform_of(request).maintenance_engine
    caller = await run_in_threadpool(authenticate, engine, credentials.credentials)
    bind_tenant(caller.tenant_id)
    request.state.caller = caller
    return caller


def requires(role: Role) -> Callable[[Caller], Caller]:
    """A dependency admitting only callers whose role includes ``role`` (403 otherwise)."""

    def check(caller: Caller = Depends(authenticated)) -> Caller:  # noqa: B008
        if not caller.role.includes(role):
            raise ForbiddenError(
                f"role {caller.role.value!r} may not do this: it needs {role.value!r}"
            )
        return caller

    return check
