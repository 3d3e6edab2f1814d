"""The FastAPI application: `/health`, and the `/v1` routers (docs/api.md)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from fastapi import FastAPI, Request, Response

from hartonomous import __version__
from hartonomous.api import health
from hartonomous.api.middleware import RequestHygieneMiddleware, caller_request_id
from hartonomous.api.problems import REQUEST_ID_HEADER, install_problem_handlers
from hartonomous.api.rate_limits import apply_rate_limit_headers
from hartonomous.api.routes import (
    atoms,
    broker,
    deadletters,
    graph,
    holdings,
    identity,
    ingest,
    ledger,
    tenants,
)
from hartonomous.ingest.uploads import remove_stale_uploads
from hartonomous.security.counter_store import PooledCounterStore
from hartonomous.security.request_limits import RequestLimiter
from hartonomous.services import Platform

__all__ = ["REQUEST_ID_HEADER", "create_app"]


def create_app(platform: Platform) -> FastAPI:
    """The API over ``platform``: OpenAPI 3.1 at `/openapi.json`, interactive docs at `/docs`."""
    app = FastAPI(title="Hartonomous", version=__version__)
    app.state.platform = platform
    app.state.engine = platform.engine
    app.state.migrations_head = platform.migrations_head
    app.state.cdc = platform.settings.cdc
    app.state.rate_limiter = RequestLimiter(
        platform.settings.security, PooledCounterStore(platform.maintenance_engine)
    )
    install_problem_handlers(app)
    # Added before the request-id middleware below, so it runs inside it (refusals carry the id).
    app.add_middleware(RequestHygieneMiddleware)
    app.include_router(health.router)
    app.include_router(identity.router)
    app.include_router(tenants.router)
    app.include_router(broker.router)
    app.include_router(deadletters.router)
    app.include_router(graph.router)
    app.include_router(ledger.router)
    app.include_router(ingest.router)
    app.include_router(atoms.router)
    app.include_router(holdings.router)
    # Upload spools a dead process left behind (ingest/uploads.py); live ones stay locked.
    remove_stale_uploads(platform.settings.data_dir)

    @app.middleware("http")
    async def bind_request_id(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        # Honour a caller's id so one request can be followed across services.
        request_id = caller_request_id(request.headers.get(REQUEST_ID_HEADER))
        request.state.request_id = request_id
        with structlog.contextvars.bound_contextvars(request_id=request_id):
            response = await call_next(request)
        response.headers[REQUEST_ID_HEADER] = request_id
        apply_rate_limit_headers(request, response)
        return response

    return app
