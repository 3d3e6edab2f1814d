"""Content addresses: an atom's address is the SHA-256 digest of its bytes.

Digests travel as 32 raw bytes (what PostgreSQL stores as ``bytea``/what the ComponentStream
embeds); hex is only for people, logs and URLs.
"""

from __future__ import annotations

import hashlib

DIGEST_SIZE = 32
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
