"""Who is looking at a page: the session checked, its key re-checked, the role required.

``viewer(Role.X)`` is every page's dependency. No valid session (none, altered, expired, or
its key revoked, expired or disabled) raises ``SignInRequiredError``, answered with a redirect to
the sign-in page that comes back to the page asked for; a role that does not include X raises
``ForbiddenError`` (403 page). The tenant acted for is bound for the request
(``hartonomous.db.tenant_context``), so every read on ``platform.engine`` sees its rows only.
``checked_form`` refuses a POST whose CSRF token (form field ``csrf_token`` or header
``X-CSRF-Token``) is missing or not the session's (docs/admin-ui.md, "Sessions").
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from hartonomous.db.tenant_context import bind_tenant
from hartonomous.errors import ForbiddenError, NotAuthenticatedError
from hartonomous.security.authentication import Caller
from hartonomous.security.roles import Role
from hartonomous.services import Platform
from hartonomous.services.web_sessions import session_caller
from hartonomous.ui.flashes import FlashBox
from hartonomous.ui.sessions import SESSION_COOKIE, Session, SessionCodec

__all__ = [
    "PAGE_QUERY_REFUSAL",
    "CsrfRefusedError",
    "SignInRequiredError",
    "Viewer",
    "check_csrf",
    "checked_form",
    "flashes_of",
    "platform_of",
    "refused_query",
    "sessions_of",
    "viewer",
]


# The key, in the ASGI scope's "state", of a page's query that the API's hygiene middleware
# refused (not UTF-8, a NUL character): ``refused_query`` raises it for the UI's error page.
PAGE_QUERY_REFUSAL = "hartonomous.page_query_refusal"


def refused_query(request: Request) -> None:
    """Every page's first dependency: raises the ``UsageError`` the hygiene middleware kept
    for this page's query (``PAGE_QUERY_REFUSAL``), answered by the UI's 400 page."""
    refused = request.scope.get("state", {}).get(PAGE_QUERY_REFUSAL)
    if refused is not None:
        raise refused


class SignInRequiredError(Exception):
    """No usable session: sign in, then come back to ``wanted`` (a path under /ui)."""

    def __init__(self, wanted: str, reason: str) -> None:
        super().__init__(reason)
        self.wanted = wanted
        self.reason = reason


class CsrfRefusedError(ForbiddenError):
    code = "csrf-refused"
    title = "Form refused"


@dataclass(frozen=True)
class Viewer:
    """The signed-in caller (``tenant_id`` the tenant acted for) and its session."""

    caller: Caller
    session: Session

    @property
    def tenant_id(self) -> str:
        return self.caller.tenant_id

    @property
    def sees_billing(self) -> bool:
        return self.caller.role.includes(Role.DATA_SCIENTIST)

    @property
    def is_admin(self) -> bool:
        return self.caller.role.includes(Role.ADMIN)


def platform_of(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


def sessions_of(request: Request) -> SessionCodec:
    codec: SessionCodec = request.app.state.sessions
    return codec


def flashes_of(request: Request) -> FlashBox:
    box: FlashBox = request.app.state.flashes
    return box


def _wanted(request: Request) -> str:
    """The page asked for (path and query), to come back to after signing in."""
    query = f"?{request.url.query}" if request.url.query else ""
    return f"{request.url.path}{query}"


def viewer(role: Role) -> Callable[[Request], Awaitable[Viewer]]:
    """A dependency admitting a signed-in browser whose key's role includes ``role``."""

    # async, as api/auth.py's: a tenant bound here reaches the endpoint's thread.
    async def check(request: Request) -> Viewer:
        session = sessions_of(request).loads(request.cookies.get(SESSION_COOKIE))
        if session is None:
            raise SignInRequiredError(_wanted(request), "Sign in to continue.")
        try:
            caller = await run_in_threadpool(session_caller, platform_of(request), session.key_id)
        except NotAuthenticatedError as exc:
            raise SignInRequiredError(_wanted(request), f"Your session ended: {exc}") from None
        if session.tenant_id != caller.tenant_id and caller.role.includes(Role.ADMIN):
            caller = Caller(session.tenant_id, caller.principal_id, caller.role, caller.key_id)
        bind_tenant(caller.tenant_id)
        if not caller.role.includes(role):
            raise ForbiddenError(
                f"this page needs the {role.value!r} role; your key's is {caller.role.value!r}"
            )
        seen = Viewer(caller, session)
        request.state.viewer = seen  # for the layout (ui/rendering.py)
        return seen

    return check


async def checked_form(request: Request, seen: Viewer) -> FormData:
    """The POSTed form once its CSRF token matches the session's; ``CsrfRefusedError`` (403)."""
    form = await request.form()
    check_csrf(request.headers.get("x-csrf-token") or form.get("csrf_token"), seen)
    return form


def check_csrf(offered: object, seen: Viewer) -> None:
    """Refuses (``CsrfRefusedError``, 403) a token that is missing or not the session's."""
    if not isinstance(offered, str) or not hmac.compare_digest(
        offered.encode(), seen.session.csrf_token.encode()
    ):
        raise CsrfRefusedError(
            "the form's CSRF token is missing or not this session's: reload the page and retry"
        )


ANYONE = Depends(viewer(Role.USER))
ADMIN = Depends(viewer(Role.ADMIN))
