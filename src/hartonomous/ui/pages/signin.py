"""Sign-in with an API key, sign-out, and an admin's switch of the tenant acted for."""

from __future__ import annotations

import hmac
from typing import Annotated
from urllib.parse import unquote, urlsplit

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from hartonomous.errors import NotAuthenticatedError, NotFoundError, UsageError
from hartonomous.security.tenants import validate_tenant_id
from hartonomous.services.tenancy import show_tenant
from hartonomous.services.web_sessions import sign_in
from hartonomous.ui.access import (
    ADMIN,
    ANYONE,
    CsrfRefusedError,
    Viewer,
    checked_form,
    platform_of,
    sessions_of,
)
from hartonomous.ui.rendering import render
from hartonomous.ui.sessions import (
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    Session,
    new_token,
    set_cookie,
)

router = APIRouter()
_HOME = "/ui/dashboard"
_SIGN_IN_SECONDS = 3600


def safe_next(wanted: str | None) -> str:
    """``wanted`` when it is a page of this UI, the dashboard otherwise (no open redirect).

    A browser resolves dot segments (``/ui/../x``, also percent-encoded, RFC 3986 section 5.2.4
    and the WHATWG URL standard) and reads ``\\`` as ``/``: a path that holds either, or that
    does not stay under ``/ui/``, is refused."""
    if not wanted or not wanted.startswith("/ui/") or wanted.startswith("/ui//"):
        return _HOME
    path = unquote(urlsplit(wanted).path)
    if "\\" in path or any(part in (".", "..") for part in path.split("/")):
        return _HOME
    return wanted


@router.get("/")
def home() -> Response:
    return RedirectResponse(_HOME, status_code=303)


@router.get("/sign-in")
def sign_in_page(
    request: Request, next_page: Annotated[str | None, Query(alias="next")] = None
) -> Response:
    """The sign-in form; a fresh CSRF token in the form and in a cookie (double submit)."""
    return _form(request, safe_next(next_page), {}, "")


def _form(request: Request, wanted: str, errors: dict[str, str], notice: str) -> Response:
    token = new_token()
    response = render(
        request,
        "signin.html",
        {"next": wanted, "csrf_token": token, "errors": errors, "notice": notice},
        status_code=400 if errors else 200,
    )
    set_cookie(request, response, SIGN_IN_COOKIE, token, _SIGN_IN_SECONDS)
    return response


@router.post("/sign-in")
async def sign_in_submit(request: Request) -> Response:
    """Check the key; on success a session cookie and a redirect to the page wanted."""
    form = await request.form()
    expected = request.cookies.get(SIGN_IN_COOKIE, "")
    offered = form.get("csrf_token")
    if (
        not expected
        or not isinstance(offered, str)
        or not hmac.compare_digest(offered.encode(), expected.encode())
    ):
        raise CsrfRefusedError(
            "the sign-in form's CSRF token is missing or does not match: reload the page"
        )
    wanted = safe_next(str(form.get("next") or ""))
    token = str(form.get("api_key") or "")
    if not token.strip():
        return _form(request, wanted, {"api_key": "Enter an API key (hk_…)."}, "")
    try:
        caller = await run_in_threadpool(sign_in, platform_of(request), token)
    except NotAuthenticatedError as exc:
        return _form(request, wanted, {"api_key": str(exc)}, "")
    session = Session(key_id=caller.key_id, tenant_id=caller.tenant_id, csrf_token=new_token())
    response = RedirectResponse(wanted, status_code=303)
    codec = sessions_of(request)
    set_cookie(request, response, SESSION_COOKIE, codec.dumps(session), codec.max_age_seconds)
    response.delete_cookie(SIGN_IN_COOKIE, path="/ui")
    return response


@router.post("/sign-out")
async def sign_out(request: Request, seen: Viewer = ANYONE) -> Response:
    await checked_form(request, seen)
    response = RedirectResponse("/ui/sign-in", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/ui")
    return response


@router.post("/tenant")
async def switch_tenant(request: Request, seen: Viewer = ADMIN) -> Response:
    """An admin acts for another (existing) tenant; the message names an unknown one."""
    form = await checked_form(request, seen)
    tenant_id = str(form.get("tenant_id") or "").strip()
    back = safe_next(str(form.get("next") or ""))
    try:
        if not tenant_id:
            raise UsageError("enter a tenant id")
        validate_tenant_id(tenant_id)
        await run_in_threadpool(show_tenant, platform_of(request), tenant_id)
    except (UsageError, NotFoundError) as exc:
        return render(
            request,
            "switch_tenant.html",
            {"errors": {"tenant_id": str(exc)}, "value": tenant_id, "next": back},
            status_code=400,
        )
    session = Session(seen.session.key_id, tenant_id, seen.session.csrf_token)
    response = RedirectResponse(back, status_code=303)
    codec = sessions_of(request)
    set_cookie(request, response, SESSION_COOKIE, codec.dumps(session), codec.max_age_seconds)
    return response
