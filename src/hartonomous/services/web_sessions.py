"""Sign-in to the admin web UI: an API key checked once, then its key id re-checked per page.

The UI (docs/admin-ui.md) keeps a signed session cookie naming the key id. ``sign_in`` verifies
the presented token as the HTTP API does; ``session_caller`` re-reads the key on every page,
so a key revoked, expired or disabled (its principal or tenant) ends the session at once.
``session_signing_key`` derives the cookie key from the database's cursor secret
(``services.pagination``) with HMAC-SHA256 over a label of its own, so every process on one
database accepts the same sessions and a cursor never verifies as a session or back.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

from hartonomous.errors import NotAuthenticatedError
from hartonomous.security.authentication import (
    Caller,
    admit_verified_key,
    authenticate,
    load_key,
)
from hartonomous.services.pagination import cursor_codec
from hartonomous.services.platform import Platform

__all__ = ["session_caller", "session_signing_key", "sign_in"]

_LABEL = b"hartonomous admin-ui session v1"


def session_signing_key(platform: Platform) -> bytes:
    """32 bytes keying the UI's session cookies; ``UnavailableError`` before migrations."""
    secret = cursor_codec(platform.maintenance_engine).secret
    return hmac.new(secret, _LABEL, hashlib.sha256).digest()


def sign_in(platform: Platform, token: str) -> Caller:
    """The caller of ``token`` (``hk_<key id>_<secret>``); ``NotAuthenticatedError`` naming
    why it is refused (malformed, unknown, revoked, expired, disabled), never echoing it."""
    return authenticate(platform.maintenance_engine, token.strip())


def session_caller(platform: Platform, key_id: str) -> Caller:
    """The caller of a session's key while that key may still authenticate;
    ``NotAuthenticatedError`` (the session is over) otherwise."""
    stored = load_key(platform.maintenance_engine, key_id)
    if stored is None:
        raise NotAuthenticatedError(f"API key {key_id} is not known")
    return admit_verified_key(stored, datetime.now(UTC))
