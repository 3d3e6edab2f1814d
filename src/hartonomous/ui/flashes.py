"""One-time outcomes of a form (Post/Redirect/Get): a POST that changes something keeps what
its answer must show (a new key's secret, each replay's outcome) here and answers 303 to a GET
page naming the flash; that page takes it, once. A reload of the GET page finds nothing, so it
neither shows a secret again nor repeats the change (docs/admin-ui.md, "Forms").

A flash is bound to the session that made it (its CSRF token), lives ``FLASH_SECONDS`` and is
held in this process's memory only: a secret is never written to disk, a cookie or the
database. With ``[server] workers`` above 1 each worker process holds its own flashes: the
303's GET normally rides the POST's keep-alive connection, so the same process answers it;
when it does not, the page says the outcome is no longer held (for a key: revoke it and
issue another), never shows another's and never repeats the change.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from hartonomous.ui.sessions import Session

__all__ = ["FLASH_SECONDS", "FlashBox"]

FLASH_SECONDS = 300
_MOST = 1000  # flashes held at once: the oldest go first past it


@dataclass(frozen=True)
class _Flash:
    csrf_token: str
    expires: float
    payload: object


class FlashBox:
    """Flashes by id; ``clock`` is seconds (monotonic)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._held: dict[str, _Flash] = {}
        self._lock = threading.Lock()

    def put(self, session: Session, payload: object) -> str:
        """Keeps ``payload`` for ``session``; the id (URL-safe, unguessable) to name it by."""
        flash_id = secrets.token_urlsafe(16)
        now = self._clock()
        with self._lock:
            for old, flash in list(self._held.items()):
                if flash.expires <= now:
                    del self._held[old]
            while len(self._held) >= _MOST:
                del self._held[next(iter(self._held))]
            self._held[flash_id] = _Flash(session.csrf_token, now + FLASH_SECONDS, payload)
        return flash_id

    def take(self, session: Session, flash_id: str | None) -> object | None:
        """The payload, removed; None when unknown, taken already, expired or another
        session's (which is left for its owner)."""
        if not flash_id:
            return None
        with self._lock:
            flash = self._held.get(flash_id)
            if flash is None or flash.csrf_token != session.csrf_token:
                return None
            del self._held[flash_id]
        return flash.payload if flash.expires > self._clock() else None
