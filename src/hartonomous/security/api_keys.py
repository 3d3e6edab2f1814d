"""API keys: `hk_<key id>_<secret>`; only the SHA-256 of the secret is ever stored."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

TOKEN_PREFIX = "hk"  # noqa: S105 - the public prefix of every token
_KEY_ID_BYTES = 8
_SECRET_BYTES = 32
KEY_ID_PATTERN = re.compile(f"[0-9a-f]{{{2 * _KEY_ID_BYTES}}}")
"""What a key id looks like: the hex of ``_KEY_ID_BYTES`` random bytes."""


class InvalidApiKeyError(ValueError):
    """A token that is not shaped like one of ours."""


@dataclass(frozen=True)
class IssuedApiKey:
    key_id: str
    token: str  # shown to the operator once, never stored
    secret_sha256: bytes


def issue_api_key() -> IssuedApiKey:
    key_id = secrets.token_hex(_KEY_ID_BYTES)
    secret = secrets.token_urlsafe(_SECRET_BYTES)
    return IssuedApiKey(
        key_id=key_id,
        token=f"{TOKEN_PREFIX}_{key_id}_{secret}",
        secret_sha256=hash_secret(secret),
    )


def parse_api_key(token: str) -> tuple[str, str]:
    """Split a token into (key id, secret)."""
    prefix, _, rest = token.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != TOKEN_PREFIX or not KEY_ID_PATTERN.fullmatch(key_id) or not secret:
        raise InvalidApiKeyError("API key is malformed: expected hk_<key id>_<secret>")
    return key_id, secret


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def secret_matches(secret: str, stored_sha256: bytes) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_sha256)
