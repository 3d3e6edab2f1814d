"""Graceful shutdown of long requests: uploads and event streams stop when the server stops.

On SIGTERM or SIGINT uvicorn stops accepting connections and waits for the requests in flight
(`timeout_graceful_shutdown`), then cancels them; a request whose response had not started
then got uvicorn's plain-text 500. A slow upload is exactly such a request. The server
triggers the app's ``ShutdownNotice`` as the shutdown begins: an upload still receiving
answers ``503 shutting-down`` (problem+json, ``Retry-After``, ``Connection: close``) with its
spool removed, and an event stream ends, both at once instead of after the timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request

from hartonomous.errors import UnavailableError

__all__ = ["ShutdownNotice", "ShuttingDownError", "shutdown_notice"]

T = TypeVar("T")

RETRY_AFTER_SECONDS = 5


class ShuttingDownError(UnavailableError):
    """The server began shutting down while the request was still arriving; retry it."""

    code = "shutting-down"
    title = "Server shutting down"
    retry_after_seconds = RETRY_AFTER_SECONDS


class ShutdownNotice:
    """Set once, when the server starts its graceful shutdown. Used on the event loop's
    thread only (uvicorn's signal handler runs there)."""

    def __init__(self) -> None:
        self._triggered = False
        self._event: asyncio.Event | None = None

    def trigger(self) -> None:
        self._triggered = True
        if self._event is not None:
            self._event.set()

    @property
    def triggered(self) -> bool:
        return self._triggered

    async def first(self, awaitable: Awaitable[T]) -> T:
        """``awaitable``'s result, unless shutdown comes first: then it is cancelled and
        ``ShuttingDownError`` raised."""
        if self._triggered:
            raise ShuttingDownError("the server is shutting down; send the request again")
        if self._event is None:
            self._event = asyncio.Event()
        work = asyncio.ensure_future(awaitable)
        notice = asyncio.ensure_future(self._event.wait())
        try:
            await asyncio.wait((work, notice), return_when=asyncio.FIRST_COMPLETED)
        finally:
            notice.cancel()
            if not work.done():
                work.cancel()
        if work.done() and not work.cancelled():
            return work.result()
        raise ShuttingDownError("the server is shutting down; send the request again")


def shutdown_notice(request: Request) -> ShutdownNotice:
    """The notice of the app serving ``request`` (set by ``create_app``)."""
    notice: ShutdownNotice = request.app.state.shutdown
    return notice
