"""Liveness and readiness: ready only when the database answers and migrations are at head."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live")
def live() -> dict[str, str]:
    return {"status": "live"}


@router.get("/ready", response_model=None)
def ready(request: Request) -> dict[str, Any] | JSONResponse:
    engine: Engine = request.app.state.engine
    head: str = request.app.state.migrations_head
    try:
        with engine.connect() as connection:
            revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except DBAPIError as exc:
        return _not_ready(f"database unavailable: {str(exc.orig).splitlines()[0]}")
    if revision != head:
        return _not_ready(f"migrations at {revision or 'no revision'}, head is {head}")
    return {"status": "ready", "revision": revision}


def _not_ready(detail: str) -> JSONResponse:
    return JSONResponse(
        status_code=503,
        media_type="application/problem+json",
        content={"type": "about:blank", "title": "Not ready", "status": 503, "detail": detail},
    )
