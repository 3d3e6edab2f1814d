"""`/health/live` and `/health/ready` (docs/operations.md, "Heartbeats and readiness").

Readiness is the ``services.health.readiness`` report: 200 ``ready`` or ``degraded`` (change
capture lags, or an expected service's heartbeat is stale, failing or missing), 503
problem+json ``not-ready`` when the database does not answer or migrations are not at head.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from hartonomous.api.auth import platform_of
from hartonomous.api.routing import api_router
from hartonomous.services.health import Readiness, readiness

__all__ = ["LivenessShortcut", "router"]

router = api_router(prefix="/health", tags=["health"])

_LIVE_BODY = b'{"status":"live"}'
_LIVE_HEADERS = ((b"content-type", b"application/json"), (b"content-length", b"17"))

_NOT_READY: dict[int | str, dict[str, Any]] = {
    503: {
        "description": "Not ready (problem+json): database unavailable or migrations behind",
        "content": {"application/problem+json": {}},
    }
}


@router.get("/live")
async def live() -> dict[str, str]:
    # Documents the route (OpenAPI); a plain `GET /health/live` is answered by
    # LivenessShortcut before it, with the same body.
    return {"status": "live"}


class LivenessShortcut:
    """Answers a plain `GET /health/live` (no query string) ahead of the FastAPI stack.

    Liveness is polled often and says only that the process serves HTTP: routing, dependency
    solving and response rendering would cost more than the answer (benchmarks/api.py). It
    sits inside the request-id and hygiene middlewares (api/app.py), so the answer carries
    ``X-Request-ID`` and a malformed request is refused as anywhere else; anything but a
    plain GET (a query string, whose parameters the route refuses, another method, a body,
    which every body-less route refuses) goes on to the route.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] == "/health/live"
            and scope["method"] == "GET"
            and not scope.get("query_string")
            and not _has_body(scope)
        ):
            # A fresh header list: the request-id middleware appends to it.
            start = {"type": "http.response.start", "status": 200, "headers": [*_LIVE_HEADERS]}
            await send(start)
            await send({"type": "http.response.body", "body": _LIVE_BODY})
            return
        await self.app(scope, receive, send)


def _has_body(scope: Scope) -> bool:
    """A request that announces a body: chunked, or a Content-Length other than 0."""
    for name, value in scope.get("headers", ()):
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False


@router.get("/ready", responses=_NOT_READY)
def ready(request: Request) -> Readiness:
    return readiness(platform_of(request))
