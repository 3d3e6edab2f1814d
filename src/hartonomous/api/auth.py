"""Route dependencies: authenticate the bearer key, then require a role (docs/security.md).

Every `/v1` route declares ``caller: Caller = Depends(requires(Role.X))``: a request without a
valid key is answered 401 (``WWW-Authenticate: Bearer``), one whose role does not include X 403.
Authenticating binds the caller's tenant (``hartonomous.db.tenant_context``) for the rest
of the request, so every transaction on ``platform.engine`` sees that tenant's rows only
(docs/security.md, "Isolation").
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Depends, Request
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from hartonomous.api.rate_limits import enforce_rate_limit
from hartonomous.db.tenant_context import bind_tenant
from hartonomous.errors import ForbiddenError, NotAuthenticatedError
from hartonomous.security.authentication import Caller
from hartonomous.security.key_cache import VerifiedKeyCache
from hartonomous.security.roles import Role
from hartonomous.services import Platform

__all__ = [
    "Caller",
    "authenticated",
    "authorize",
    "platform_of",
    "require_role",
    "required_role",
    "requires",
]

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

    It also counts the request against its rate limits (``RateLimitedError``, 429:
    api/rate_limits.py). A key verified within `[security] api_key_cache_seconds`
    (security/key_cache.py) and a permit this process holds (a lease) need no database, and
    are decided on the event loop; a lookup or a new lease waits in a worker thread.
    """
    earlier: Caller | None = getattr(request.state, "caller", None)
    if earlier is not None:
        return earlier  # authorized before the body was read (api/routing.py); counted then
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise NotAuthenticatedError("send an API key as `Authorization: Bearer hk_…`")
    keys: VerifiedKeyCache = request.app.state.key_cache
    token = credentials.credentials
    # A key verified moments ago is admitted on the event loop (security/key_cache.py).
    caller = keys.cached(token)
    if caller is None:
        caller = await run_in_threadpool(keys.authenticate, token)
    bind_tenant(caller.tenant_id)
    request.state.caller = caller
    await enforce_rate_limit(request, caller)
    return caller


def still_authenticated(request: Request) -> Caller:
    """The request's caller, authenticated again from its bearer key (blocking: call it in a
    worker thread): what a long-lived response (an event stream) checks as it goes on.
    Raises ``NotAuthenticatedError`` (its subclasses for a disabled principal or tenant) as
    a new request with the key would get; a change made in another process is seen within
    `[security] api_key_cache_seconds`."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        raise NotAuthenticatedError("send an API key as `Authorization: Bearer hk_…`")
    keys: VerifiedKeyCache = request.app.state.key_cache
    return keys.cached(token.strip()) or keys.authenticate(token.strip())


async def authorize(request: Request, role: Role) -> Caller:
    """Authenticate ``request``'s bearer key (401) and require ``role`` (403), as the
    ``requires(role)`` dependency does; the caller is kept for that dependency to reuse."""
    caller = await authenticated(request, await _bearer(request))
    require_role(caller, role)
    return caller


def require_role(caller: Caller, role: Role) -> None:
    """``ForbiddenError`` (403) unless ``caller``'s role includes ``role``."""
    if not caller.role.includes(role):
        raise ForbiddenError(f"role {caller.role.value!r} may not do this: it needs {role.value!r}")


def requires(role: Role) -> Callable[[Caller], Awaitable[Caller]]:
    """A dependency admitting only callers whose role includes ``role`` (403 otherwise).

    The dependency carries the role as ``required_role`` (see :func:`required_role`), so the
    authorization matrix can be read off the app's routes (docs/security.md).
    """

    # async: a sync dependency would cost a worker-thread hop for a comparison.
    async def check(caller: Caller = Depends(authenticated)) -> Caller:  # noqa: B008
        require_role(caller, role)
        return caller

    check.required_role = role  # type: ignore[attr-defined]
    return check


def required_role(route: APIRoute) -> Role | None:
    """The least role ``route`` admits (the strictest ``requires`` among its dependencies,
    however deeply nested), or None when it has none: an unauthenticated route."""
    found: list[Role] = []
    pending = list(route.dependant.dependencies)
    while pending:
        dependant = pending.pop()
        role = getattr(dependant.call, "required_role", None)
        if isinstance(role, Role):
            found.append(role)
        pending.extend(dependant.dependencies)
    return max(found, key=lambda role: role.rank, default=None)
