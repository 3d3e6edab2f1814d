"""`/health/live` and `/health/ready` (docs/operations.md, "Heartbeats and readiness").

Readiness is the ``services.health.readiness`` report: 200 ``ready`` or ``degraded`` (change
capture lags, or an expected service's heartbeat is stale, failing or missing), 503
problem+json ``not-ready`` when the database does not answer or migrations are not at head.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from hartonomous.api.auth import platform_of
from hartonomous.services.health import Readiness, readiness

router = APIRouter(prefix="/health", tags=["health"])

_NOT_READY: dict[int | str, dict[str, Any]] = {
    503: {
        "description": "Not ready (problem+json): database unavailable or migrations behind",
        "content": {"application/problem+json": {}},
    }
}


@router.get("/live")
async def live() -> dict[str, str]:
    # async: answered on the event loop, without a worker-thread hop (benchmarks/api.py).
    return {"status": "live"}


@router.get("/ready", responses=_NOT_READY)
def ready(request: Request) -> Readiness:
    return readiness(platform_of(request))
