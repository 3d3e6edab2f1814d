"""Content addresses: an atom's address is the SHA-256 digest of its bytes.

Digests travel as 32 raw bytes (what PostgreSQL stores as ``bytea``/what the ComponentStream
embeds); hex is only for people, logs and URLs.
"""

from __future__ import annotations

import hashlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cache

DIGEST_SIZE = 32
# Buffers queued to the background hasher at most; beyond, `update` waits (bounded memory).
_QUEUED_UPDATES = 64
_HEX_DIGITS = frozenset("0123456789abcdef")


def sha256_digest(data: bytes | bytearray | memoryview) -> bytes:
    """Return the 32-byte SHA-256 digest of ``data`` (the atom's content address)."""
    return hashlib.sha256(data).digest()


def digest_to_hex(digest: bytes) -> str:
    """Render a 32-byte digest as 64 lowercase hex characters."""
    require_digest(digest)
    return digest.hex()


def hex_to_digest(text: str) -> bytes:
    """Parse exactly 64 lowercase hex characters into a 32-byte digest.

    Only the canonical lowercase spelling is accepted so that one address has one spelling
    (upper case or surrounding whitespace would otherwise make equal addresses compare unequal
    as strings).
    """
    if len(text) != 2 * DIGEST_SIZE or not _HEX_DIGITS.issuperset(text):
        raise ValueError(f"not a SHA-256 hex digest (64 lowercase hex characters): {text!r}")
    return bytes.fromhex(text)


def require_digest(value: bytes) -> bytes:
    """Return ``value`` if it is a 32-byte digest, else raise ``ValueError``."""
    if not isinstance(value, bytes) or len(value) != DIGEST_SIZE:
        raise ValueError(f"a SHA-256 digest is {DIGEST_SIZE} bytes, got {value!r:.80}")
    return value


class BackgroundSha256:
    """SHA-256 of a sequence of buffers, computed in order by one background thread.

    The caller goes on (cutting, storing) while the digest is computed: hashlib releases the
    GIL, so on a multi-core machine this hash costs the caller almost nothing. Buffers must not
    change once given (``bytes``, or views of them). All instances share the one thread, which
    runs updates in the order they are given.
    """

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._queued: deque[Future[None]] = deque()

    def update(self, data: bytes | memoryview) -> None:
        while len(self._queued) >= _QUEUED_UPDATES:
            self._queued.popleft().result()
        self._queued.append(_hasher().submit(self._hash.update, data))

    def digest(self) -> bytes:
        while self._queued:
            self._queued.popleft().result()
        return self._hash.digest()


@cache
def _hasher() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(1, thread_name_prefix="sha256")
