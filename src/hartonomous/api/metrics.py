"""`GET /metrics`: the Prometheus text exposition (docs/operations.md, "Metrics").

Open to anyone who reaches the API, or only to ADMIN API keys, as `[telemetry] metrics_access`
says (default ``admin``: Prometheus sends the key as a bearer token). Not part of the OpenAPI
document: it is for a scraper, not an API client.

Checking a key needs the database. So that `hartonomous_database_up 0` still reaches
Prometheus while the database cannot be reached, an ADMIN key this process verified within
``security.key_cache.OUTAGE_GRACE_SECONDS`` is admitted then (its secret still matched against
the kept hash): the exposition then holds no database figures anyway (database_up 0 and this
process's own histograms). Any other key is refused as usual (503 while the database is down).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from hartonomous.api.auth import authorize, platform_of, require_role
from hartonomous.api.routing import api_router
from hartonomous.errors import UnavailableError
from hartonomous.security.authentication import Caller
from hartonomous.security.key_cache import VerifiedKeyCache
from hartonomous.security.roles import Role
from hartonomous.services.database_errors import as_hartonomous_error
from hartonomous.services.metrics import CONTENT_TYPE, PlatformCollector, exposition

__all__ = ["metrics_router", "require_metrics_admin"]


async def require_metrics_admin(request: Request) -> Caller:
    """An ADMIN caller (401/403 as ``requires(Role.ADMIN)``); while the database cannot be
    reached, an ADMIN key this process verified recently (``VerifiedKeyCache.verified_before``),
    else the outage's own 503."""
    try:
        return await authorize(request, Role.ADMIN)
    except Exception as exc:
        failure = exc if isinstance(exc, UnavailableError) else as_hartonomous_error(exc)
        if not isinstance(failure, UnavailableError):
            raise
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        keys: VerifiedKeyCache = request.app.state.key_cache
        caller = keys.verified_before(token.strip()) if scheme.lower() == "bearer" else None
        if caller is None:
            raise failure from exc
        require_role(caller, Role.ADMIN)
        request.state.caller = caller  # the route's dependency run reuses it (api/auth.py)
        return caller


require_metrics_admin.required_role = Role.ADMIN  # type: ignore[attr-defined]
require_metrics_admin.authorizes_first = True  # type: ignore[attr-defined]  # api/routing.py


def metrics_router(collector: PlatformCollector, access: str) -> APIRouter:
    """The `/metrics` route over ``collector``; ``access`` ``open`` or ``admin``."""
    guard = [] if access == "open" else [Depends(require_metrics_admin)]
    router = api_router(tags=["metrics"], include_in_schema=False, dependencies=guard)

    @router.get("/metrics")
    async def metrics(request: Request) -> Response:
        platform_of(request)  # the app's platform is the collector's
        body = await run_in_threadpool(exposition, collector)
        return Response(body, media_type=CONTENT_TYPE)

    return router
