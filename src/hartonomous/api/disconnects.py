"""A client that goes away while its request body is arriving is not a server error.

Reading the body of such a request (a multipart upload, a JSON or CloudEvents body) raises
Starlette's ``ClientDisconnect`` wherever the route reads it. No route answers it: there is
no one to answer. Left alone it would leave the app and be logged by the server as an
``Exception in ASGI application`` with a traceback (and as ``unhandled_error``), though
nothing failed on this side. ``ClientDisconnectMiddleware`` ends such a request quietly: one
``client_disconnected`` info line (method and path; the request id is bound in the logging
context), nothing sent. What the route had written so far is cleaned up by the route itself
(an upload's spool is removed whatever the outcome, docs/api.md "Ingestion").

Pure ASGI, inside Starlette's ``ServerErrorMiddleware`` and outside its
``ExceptionMiddleware``, so it sees the exception of every route, the admin UI's included.
"""

from __future__ import annotations

import structlog
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["ClientDisconnectMiddleware"]

log = structlog.get_logger(__name__)


class ClientDisconnectMiddleware:
    """Ends a request whose client disconnected mid-body with one info line (module doc)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Only an HTTP request's body raises ClientDisconnect: no scope type check needed.
        try:
            await self.app(scope, receive, send)
        except ClientDisconnect:
            log.info("client_disconnected", method=scope.get("method"), path=scope["path"])
