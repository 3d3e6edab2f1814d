"""What the UI needs of the server's shutdown notice (``api.shutdown.ShutdownNotice``, passed
in by ``create_app``): typed here so the UI does not import the API package."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol, TypeVar

from starlette.requests import Request

__all__ = ["StopNotice", "stop_notice"]

T = TypeVar("T")


class StopNotice(Protocol):
    @property
    def triggered(self) -> bool: ...

    async def first(self, awaitable: Awaitable[T]) -> T:
        """``awaitable``'s result, or an ``UnavailableError`` once the server stops first."""
        ...


def stop_notice(request: Request) -> StopNotice:
    notice: StopNotice = request.app.state.shutdown
    return notice
