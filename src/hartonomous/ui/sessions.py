"""The admin UI's session cookie: signed, expiring, naming the key and the tenant acted for.

The cookie ``hartonomous_session`` holds ``{"k": key id, "t": tenant, "c": CSRF token}``
signed by itsdangerous (HMAC-SHA1 over a key derived per purpose from
``services.web_sessions.session_signing_key``) with the time it was issued; past
``max_age_seconds`` it is refused and the user signs in again. It is ``HttpOnly``,
``SameSite=Strict`` and ``Secure`` when the request came over HTTPS (docs/admin-ui.md).
The API key's secret is never stored: the key id is re-checked against the database on every
page (``services.web_sessions.session_caller``).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer
from itsdangerous.timed import TimestampSigner
from starlette.requests import Request
from starlette.responses import Response

__all__ = [
    "SESSION_COOKIE",
    "SESSION_SECONDS",
    "SIGN_IN_COOKIE",
    "Session",
    "SessionCodec",
    "new_token",
    "set_cookie",
]

SESSION_COOKIE = "hartonomous_session"
# Holds the sign-in form's CSRF token before there is a session (a double-submit cookie).
SIGN_IN_COOKIE = "hartonomous_sign_in"
SESSION_SECONDS = 8 * 3600


def new_token() -> str:
    """A fresh unguessable token (32 random bytes, URL-safe Base64)."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Session:
    """A signed-in browser: the key it signed in with, the tenant acted for (an admin may
    switch), and the CSRF token every form and htmx request must carry."""

    key_id: str
    tenant_id: str
    csrf_token: str


class SessionCodec:
    """Signs and reads session cookies; ``clock`` (seconds since the epoch) is the time they
    are issued at and checked against."""

    def __init__(
        self, key: bytes, max_age_seconds: int, clock: Callable[[], float] = time.time
    ) -> None:
        class _Signer(TimestampSigner):
            def get_timestamp(self) -> int:
                return int(clock())

        self.max_age_seconds = max_age_seconds
        self._serializer = URLSafeTimedSerializer(key, salt="ui-session", signer=_Signer)

    def dumps(self, session: Session) -> str:
        return self._serializer.dumps(
            {"k": session.key_id, "t": session.tenant_id, "c": session.csrf_token}
        )

    def loads(self, cookie: str | None) -> Session | None:
        """The session in ``cookie``; None when absent, altered or older than the maximum."""
        if not cookie:
            return None
        try:
            data = self._serializer.loads(cookie, max_age=self.max_age_seconds)
        except BadSignature:  # SignatureExpired is one too
            return None
        if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in "ktc"):
            return None
        return Session(key_id=data["k"], tenant_id=data["t"], csrf_token=data["c"])


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    """Set ``name`` HttpOnly, SameSite=Strict, path /ui, Secure when served over HTTPS."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
