"""Liveness and readiness: ready only when the database answers and migrations are at head.

Readiness also reports change capture: "degraded" (still 200: the API itself can serve) when
the replication slot is missing or lags past `[cdc] lag_alert_bytes` / `lag_alert_seconds`,
so that a wedged or stopped CES consumer is never reported as plainly ready (docs/cdc.md).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from hartonomous.cdc.replication import CdcStatus, cdc_status
from hartonomous.config.sections import CdcSettings
from hartonomous.messaging.broker import psycopg_connection

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live")
async def live() -> dict[str, str]:
    # async: answered on the event loop, without a worker-thread hop (benchmarks/api.py).
    return {"status": "live"}


@router.get("/ready", response_model=None)
def ready(request: Request) -> dict[str, Any] | JSONResponse:
    engine: Engine = request.app.state.engine
    head: str = request.app.state.migrations_head
    cdc: CdcSettings = getattr(request.app.state, "cdc", None) or CdcSettings()
    try:
        with engine.connect() as connection:
            revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
            capture = cdc_status(psycopg_connection(connection), cdc) if revision == head else None
    except DBAPIError as exc:
        return _not_ready(f"database unavailable: {str(exc.orig).splitlines()[0]}")
    if revision != head or capture is None:
        return _not_ready(f"migrations at {revision or 'no revision'}, head is {head}")
    answer: dict[str, Any] = {
        "status": "ready",
        "revision": revision,
        "change_capture": {
            "slot_exists": capture.slot_exists,
            "lag_bytes": capture.lag_bytes,
            "lag_seconds": capture.lag_seconds,
            "lagging": capture.lagging,
        },
    }
    problem = _capture_problem(capture)
    if problem:
        answer["status"] = "degraded"
        answer["detail"] = problem
    return answer


def _capture_problem(capture: CdcStatus) -> str | None:
    if not capture.slot_exists:
        return f"change capture: replication slot {capture.slot} is missing"
    if capture.lagging:
        return (
            f"change capture lags: {capture.lag_bytes} bytes, "
            f"{capture.lag_seconds}s since the CES consumer was caught up (thresholds "
            f"{capture.lag_alert_bytes} bytes, {capture.lag_alert_seconds}s)"
        )
    return None


def _not_ready(detail: str) -> JSONResponse:
    return JSONResponse(
        status_code=503,
        media_type="application/problem+json",
        content={"type": "about:blank", "title": "Not ready", "status": 503, "detail": detail},
    )
