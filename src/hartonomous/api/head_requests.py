"""HEAD on every GET route (RFC 9110 §9.3.2): the GET's status and headers, and no body.

FastAPI routes declared with ``@router.get`` take only GET (Starlette's own routes add HEAD,
FastAPI's do not), so a HEAD was a 405. This middleware runs a HEAD request as the GET it
mirrors and passes on the response's start (status and headers, ``Content-Length`` as the
GET would give it, or none for a stream) with an empty body. Once the start is sent, the app
is told the client has gone (``http.disconnect``), so a streamed answer (an atom's bytes, a
job's event stream) stops at once instead of being produced for nobody. A HEAD where GET is
not taken is the GET's 405, whose ``Allow`` names the methods the path takes.
"""

from __future__ import annotations

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["HeadAsGet"]

_DISCONNECT: Message = {"type": "http.disconnect"}


class HeadAsGet:
    """ASGI middleware answering ``HEAD`` as ``GET`` without the body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        answered = anyio.Event()

        async def send_head(message: Message) -> None:
            if answered.is_set():
                return  # the body (and the end of a stream) is not sent for a HEAD
            if message["type"] == "http.response.start":
                await send(message)
            elif message["type"] == "http.response.body":
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                answered.set()
            else:  # a zero-copy file answer (`http.response.pathsend`) ends the response too
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                answered.set()

        async def receive_head() -> Message:
            if answered.is_set():
                return _DISCONNECT
            message: Message = _DISCONNECT
            async with anyio.create_task_group() as group:

                async def from_client() -> None:
                    nonlocal message
                    message = await receive()
                    group.cancel_scope.cancel()

                group.start_soon(from_client)
                await answered.wait()
                group.cancel_scope.cancel()
            return message

        await self.app({**scope, "method": "GET"}, receive_head, send_head)
