"""Every request gets an id: the caller's `X-Request-ID` (when it is short printable text) or a
new one; it is bound to the log context, stored as ``request.state.request_id`` (problem bodies
quote it) and sent back. Responses to rate-limited requests get their `RateLimit` headers here
too (api/rate_limits.py), so that every answer carries them, problems included.

A plain ASGI middleware rather than ``@app.middleware("http")``: Starlette's ``BaseHTTPMiddleware``
runs each request through a task group and memory streams, which cost more CPU than a small
route itself (measured with benchmarks/api.py, docs/api.md).
"""

from __future__ import annotations

import structlog
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hartonomous.api.middleware import caller_request_id
from hartonomous.api.problems import REQUEST_ID_HEADER
from hartonomous.api.rate_limits import rate_limit_headers

__all__ = ["RequestIdMiddleware"]

_HEADER_KEY = REQUEST_ID_HEADER.lower().encode()


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((value for key, value in scope["headers"] if key == _HEADER_KEY), None)
        request_id = caller_request_id(None if given is None else given.decode("latin-1"))
        state = scope.setdefault("state", {})
        state["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers[REQUEST_ID_HEADER] = request_id
                for name, value in rate_limit_headers(state).items():
                    headers[name] = value
            await send(message)

        # bind + reset by token restores what was bound before, as ``bound_contextvars`` does,
        # without its scan of every context variable of the context (twice per request).
        tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            structlog.contextvars.reset_contextvars(**tokens)
