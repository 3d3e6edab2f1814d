"""The FastAPI application (routers are added per component as they arrive)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import structlog
from fastapi import FastAPI, Request, Response
from sqlalchemy import Engine

from hartonomous import __version__
from hartonomous.api import health
from hartonomous.config.sections import CdcSettings

REQUEST_ID_HEADER = "X-Request-ID"


def create_app(engine: Engine, migrations_head: str, cdc: CdcSettings | None = None) -> FastAPI:
    app = FastAPI(title="Hartonomous", version=__version__)
    app.state.engine = engine
    app.state.migrations_head = migrations_head
    app.state.cdc = cdc or CdcSettings()
    app.include_router(health.router)

    @app.middleware("http")
    async def bind_request_id(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        # Honour a caller's id so one request can be followed across services.
        request_id = request.headers.get(REQUEST_ID_HEADER) or uuid.uuid4().hex
        with structlog.contextvars.bound_contextvars(request_id=request_id):
            response = await call_next(request)
        response.headers[REQUEST_ID_HEADER] = request_id
        return response

    return app
