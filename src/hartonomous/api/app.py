"""The FastAPI application: `/health`, and the `/v1` routers (docs/api.md)."""

from __future__ import annotations

from fastapi import Depends, FastAPI

from hartonomous import __version__
from hartonomous.api import health
from hartonomous.api.disconnects import ClientDisconnectMiddleware
from hartonomous.api.docs_page import install_docs_page
from hartonomous.api.head_requests import HeadAsGet
from hartonomous.api.metrics import metrics_router
from hartonomous.api.middleware import RequestHygieneMiddleware
from hartonomous.api.problems import REQUEST_ID_HEADER, install_problem_handlers
from hartonomous.api.query_parameters import refuse_unknown_query_parameters
from hartonomous.api.request_ids import RequestIdMiddleware
from hartonomous.api.routes import (
    atoms,
    billing,
    broker,
    deadletters,
    embed,
    graph,
    holdings,
    identity,
    inference,
    ingest,
    ledger,
    lineage,
    models,
    provenance,
    search,
    tenants,
    usage_events,
)
from hartonomous.api.shutdown import ShutdownNotice
from hartonomous.api.uploads import receive_files
from hartonomous.ingest.uploads import remove_stale_uploads
from hartonomous.observability.tracing import instrument_app
from hartonomous.security.counter_store import PooledCounterStore
from hartonomous.security.key_cache import VerifiedKeyCache
from hartonomous.security.request_limits import RequestLimiter
from hartonomous.services import Platform
from hartonomous.services.metrics import PlatformCollector
from hartonomous.ui import UI_ROOT, create_ui

__all__ = ["REQUEST_ID_HEADER", "create_app"]


def create_app(platform: Platform) -> FastAPI:
    """The API over ``platform``: OpenAPI 3.1 at `/openapi.json`, interactive docs at `/docs`."""
    app = FastAPI(
        title="Hartonomous",
        version=__version__,
        dependencies=[Depends(refuse_unknown_query_parameters)],
        # A trailing slash is a 404 problem, not a redirect built from the Host header.
        redirect_slashes=False,
        # `/docs` is served with its assets from this server (api/docs_page.py), no CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.state.platform = platform
    # Triggered by the server when it begins a graceful shutdown (api/shutdown.py).
    app.state.shutdown = ShutdownNotice()
    security = platform.settings.security
    app.state.key_cache = VerifiedKeyCache(
        platform.maintenance_engine, security.api_key_cache_seconds
    )
    # Counters are shared by every tenant (no tenant_id): kept on the maintenance engine.
    counters = PooledCounterStore(
        platform.maintenance_engine, lease_permits=security.rate_limit_lease_permits
    )
    app.state.rate_limiter = RequestLimiter(security, counters)
    install_problem_handlers(app)
    install_docs_page(app, app.title)
    # FastAPI tries the routers in this order, each one matching the path against every route
    # it holds: the most requested come first (search: 0.1 ms less per request than seventh,
    # benchmarks/api.py). No two routers share a path, so the order changes nothing else.
    for router in (
        search.router,
        embed.router,
        health.router,
        identity.router,
        tenants.router,
        ingest.router,
        atoms.router,
        holdings.router,
        models.router,
        broker.router,
        deadletters.router,
        graph.router,
        ledger.router,
        billing.router,
        lineage.router,
        provenance.explain_router,
        provenance.streams_router,
        inference.router,
        usage_events.router,
    ):
        app.include_router(router)
    app.state.metrics = PlatformCollector(platform)
    app.include_router(
        metrics_router(app.state.metrics, platform.settings.telemetry.metrics_access)
    )
    # The admin web UI (docs/admin-ui.md): its own app, outside the API's OpenAPI document.
    app.mount(UI_ROOT, create_ui(platform, app.state.shutdown, receive_files))
    # Upload spools a dead process left behind (ingest/uploads.py); live ones stay locked.
    remove_stale_uploads(platform.settings.data_dir)
    # The last added runs outermost: request ids wrap the hygiene checks, so refusals carry one,
    # and both wrap the liveness shortcut, so its answers are checked and carry one too.
    app.add_middleware(health.LivenessShortcut)
    # HEAD runs as GET (api/head_requests.py), the liveness shortcut's included.
    app.add_middleware(HeadAsGet)
    app.add_middleware(RequestHygieneMiddleware)
    # A client gone mid-body (in a route or while the hygiene checks read a JSON body) is one
    # info line, not a server error; inside the request ids, so the line carries one.
    app.add_middleware(ClientDisconnectMiddleware)
    app.add_middleware(RequestIdMiddleware)
    instrument_app(app)  # HTTP server spans, outermost, when tracing is on
    return app
