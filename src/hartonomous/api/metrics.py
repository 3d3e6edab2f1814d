"""`GET /metrics`: the Prometheus text exposition (docs/operations.md, "Metrics").

Open to anyone who reaches the API, or only to ADMIN API keys, as `[telemetry] metrics_access`
says (default ``admin``: Prometheus sends the key as a bearer token). Not part of the OpenAPI
document: it is for a scraper, not an API client.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from hartonomous.api.auth import platform_of, requires
from hartonomous.api.routing import api_router
from hartonomous.security.roles import Role
from hartonomous.services.metrics import CONTENT_TYPE, PlatformCollector, exposition

__all__ = ["metrics_router"]


def metrics_router(collector: PlatformCollector, access: str) -> APIRouter:
    """The `/metrics` route over ``collector``; ``access`` ``open`` or ``admin``."""
    guard = [] if access == "open" else [Depends(requires(Role.ADMIN))]
    router = api_router(tags=["metrics"], include_in_schema=False, dependencies=guard)

    @router.get("/metrics")
    async def metrics(request: Request) -> Response:
        platform_of(request)  # the app's platform is the collector's
        body = await run_in_threadpool(exposition, collector)
        return Response(body, media_type=CONTENT_TYPE)

    return router
