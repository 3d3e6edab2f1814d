"""Every request gets an id: the caller's `X-Request-ID`, or a new one; it is bound to the log
context, stored as ``request.state.request_id`` (problem bodies quote it) and sent back.

A plain ASGI middleware rather than ``@app.middleware("http")``: Starlette's ``BaseHTTPMiddleware``
runs each request through a task group and memory streams, which cost more CPU than a small
route itself (measured with benchmarks/api.py, docs/api.md).
"""

from __future__ import annotations

import uuid

import structlog
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hartonomous.api.problems import REQUEST_ID_HEADER

__all__ = ["RequestIdMiddleware"]

_HEADER_KEY = REQUEST_ID_HEADER.lower().encode()


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Honour a caller's id so one request can be followed across services.
        given = next((value for key, value in scope["headers"] if key == _HEADER_KEY), b"")
        request_id = given.decode("latin-1") or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            await self.app(scope, receive, send_with_id)
