"""The FastAPI application: `/health`, and the `/v1` routers (docs/api.md)."""

from __future__ import annotations

from fastapi import FastAPI

from hartonomous import __version__
from hartonomous.api import health
from hartonomous.api.problems import REQUEST_ID_HEADER, install_problem_handlers
from hartonomous.api.request_ids import RequestIdMiddleware
from hartonomous.api.routes import embed, models, search
from hartonomous.services import Platform

__all__ = ["REQUEST_ID_HEADER", "create_app"]


def create_app(platform: Platform) -> FastAPI:
    """The API over ``platform``: OpenAPI 3.1 at `/openapi.json`, interactive docs at `/docs`."""
    app = FastAPI(title="Hartonomous", version=__version__)
    app.state.platform = platform
    app.state.engine = platform.engine
    app.state.migrations_head = platform.migrations_head
    app.state.cdc = platform.settings.cdc
    install_problem_handlers(app)
    app.include_router(health.router)
    app.include_router(search.router)
    app.include_router(embed.router)
    app.include_router(models.router)

    app.add_middleware(RequestIdMiddleware)
    return app
