"""The `/ui` application: server-rendered pages (Jinja2, htmx) over the service layer.

Mounted by ``api.app.create_app`` so `up` and `serve` serve it beside the HTTP API. Every script
and stylesheet is served from ``static/`` inside the package (no network needed; versions and
licences in docs/admin-ui.md). Errors are pages: a ``HartonomousError`` is shown with its status
and message, ``SignInRequiredError`` redirects to the sign-in page (htmx: ``HX-Redirect``) keeping
the page asked for.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import RedirectResponse, Response

from hartonomous.errors import HartonomousError
from hartonomous.services import Platform
from hartonomous.services.web_sessions import session_signing_key
from hartonomous.ui.access import SignInRequiredError, refused_query
from hartonomous.ui.flashes import FlashBox
from hartonomous.ui.pages import (
    atoms,
    billing,
    dashboard,
    deadletters,
    holdings,
    inference,
    ingestion,
    jobs,
    models,
    search,
    signin,
    tenants,
)
from hartonomous.ui.rendering import render
from hartonomous.ui.sessions import SESSION_SECONDS, SessionCodec
from hartonomous.ui.stopping import StopNotice
from hartonomous.ui.uploads import FileReceiver

__all__ = ["UI_ROOT", "create_ui"]

UI_ROOT = "/ui"
_HERE = Path(__file__).parent


def create_ui(platform: Platform, shutdown: StopNotice, receive_files: FileReceiver) -> FastAPI:
    """The UI app (mount it at ``UI_ROOT``); ``UnavailableError`` before migrations are run.
    ``receive_files`` reads upload bodies (the API's reader, ``api.uploads.receive_files``)."""
    ui = FastAPI(
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        redirect_slashes=False,
        dependencies=[Depends(refused_query)],
    )
    ui.state.platform = platform
    ui.state.shutdown = shutdown
    ui.state.receive_files = receive_files
    ui.state.sessions = SessionCodec(session_signing_key(platform), SESSION_SECONDS)
    ui.state.flashes = FlashBox()
    ui.mount("/static", StaticFiles(directory=_HERE / "static"), name="static")
    for router in (
        signin.router,
        dashboard.router,
        ingestion.router,
        jobs.router,
        search.router,
        atoms.router,
        holdings.router,
        inference.router,
        billing.router,
        models.router,
        deadletters.router,
        tenants.router,
    ):
        ui.include_router(router)
    ui.add_exception_handler(SignInRequiredError, _to_sign_in)  # type: ignore[arg-type]
    ui.add_exception_handler(HartonomousError, _error_page)  # type: ignore[arg-type]
    ui.add_exception_handler(RequestValidationError, _invalid_request)  # type: ignore[arg-type]
    ui.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    return ui


def _to_sign_in(request: Request, exc: SignInRequiredError) -> Response:
    target = f"{UI_ROOT}/sign-in?next={quote(exc.wanted, safe='')}"
    if request.headers.get("hx-request"):
        return Response(status_code=204, headers={"HX-Redirect": target})
    if request.headers.get("accept", "").startswith("text/event-stream"):
        return Response(exc.reason, status_code=401, media_type="text/plain")
    return RedirectResponse(target, status_code=303)


def _invalid_request(request: Request, exc: RequestValidationError) -> Response:
    """A malformed address or query (e.g. a dead letter id that is not a number): a 404 page
    for a path part, a 400 page naming the parameter otherwise."""
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(part) for part in first.get("loc", ()))
    status = 404 if where.startswith("path") else 400
    return render(
        request,
        "error.html",
        {
            "title": "Not found" if status == 404 else "Invalid input",
            "message": f"{where}: {first.get('msg', 'invalid')}",
            "status": status,
        },
        status_code=status,
    )


def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """Routing's own refusals (an unknown /ui address 404, a method a page does not take
    405): the UI's error page, not the framework's JSON."""
    title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "Refused")
    message = {
        404: f"there is no page at {request.url.path}",
        405: f"{request.url.path} does not take {request.method}: use the page's form",
    }.get(exc.status_code, str(exc.detail))
    return render(
        request,
        "error.html",
        {"title": title, "message": message, "status": exc.status_code},
        status_code=exc.status_code,
        headers=exc.headers,
    )


def _error_page(request: Request, exc: HartonomousError) -> Response:
    return render(
        request,
        "error.html",
        {"title": exc.title, "message": str(exc), "status": exc.http_status},
        status_code=exc.http_status,
    )
