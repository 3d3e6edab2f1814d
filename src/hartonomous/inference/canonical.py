"""The canonical form of a request and its hash, the cache key (docs/inference.md, "Caching").

Canonical JSON: the object ``{"input": …, "model": …, "task": …}`` serialised with keys sorted
at every level, no whitespace (separators ``,`` and ``:``), non-ASCII characters as
themselves in UTF-8, and numbers as Python's ``json`` writes them. ``input_hash`` is the
SHA-256 of those bytes. Texts and tensor files enter it by atom id (the SHA-256 of their
bytes), so equal content gives equal hashes however it was sent.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from hartonomous.json_types import JsonValue

__all__ = ["canonical_json", "canonical_request", "input_hash"]


def canonical_json(value: JsonValue | Mapping[str, JsonValue]) -> bytes:
    """``value`` as canonical JSON bytes (sorted keys, no whitespace, UTF-8).

    Raises ``ValueError`` for NaN or an infinity (JSON has neither).
    """
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def canonical_request(task: str, model: str | None, input: Mapping[str, JsonValue]) -> bytes:
    """The canonical JSON of a request: its task, model (atom hex or null) and input."""
    return canonical_json({"task": task, "model": model, "input": dict(input)})


def input_hash(task: str, model: str | None, input: Mapping[str, JsonValue]) -> bytes:
    """SHA-256 (32 bytes) of ``canonical_request``: with the tenant, the cache key."""
    return hashlib.sha256(canonical_request(task, model, input)).digest()
