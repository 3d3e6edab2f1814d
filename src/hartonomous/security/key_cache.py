"""Verified API keys kept in-process for a bounded time (docs/security.md, "API keys").

Looking a key up costs a query (and a pooled connection) per request. `VerifiedKeyCache`
keeps what the database said of a key that authenticated (`StoredKey`) for
``ttl_seconds``. Every request still matches the presented secret against the stored SHA-256
and checks `revoked_at` and `expires_at` against the clock, so a key that expires, or whose
grace period ends, stops at that instant. What the cache can delay is a change made in the
database:

- in this process, a revocation, rotation, disabling or role change made through
  ``services.tenancy`` takes effect on the next request: it calls `forget_verified_keys`
  once its transaction has committed, which empties every cache of the process;
- from another process (the CLI, another API process), within ``ttl_seconds``
  (`[security] api_key_cache_seconds`, default 5; 0 turns the cache off).

Only keys that authenticated are kept: an unknown or refused key is looked up every time.

While the database cannot be reached, `verified_before` admits a key this process verified
within `OUTAGE_GRACE_SECONDS` (its secret still matched against the kept hash, its expiry
against the clock): `/metrics` uses it so that `hartonomous_database_up 0` reaches Prometheus
during an outage (api/metrics.py); nothing else does.
`last_used_at` keeps its resolution: a request whose use is due to be written is looked up
and written as without the cache.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sqlalchemy import Engine

from hartonomous.security.authentication import (
    Caller,
    StoredKey,
    admit_key,
    load_key,
    parse_token,
    record_use,
    use_is_due,
)

__all__ = ["MAX_CACHED_KEYS", "OUTAGE_GRACE_SECONDS", "VerifiedKeyCache", "forget_verified_keys"]

OUTAGE_GRACE_SECONDS = 3600.0
"""How long after its last verification a key still opens `/metrics` while the database
cannot be reached (Prometheus' own `up == 0` alerts on an outage longer than that)."""

MAX_CACHED_KEYS = 10_000
"""Keys one cache holds at most; past it the cache starts again empty (memory stays bounded
whatever keys callers present)."""


class _Generation:
    """How many times this process has forgotten every verified key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def advance(self) -> None:
        with self._lock:
            self.value += 1


_generation = _Generation()


def forget_verified_keys() -> None:
    """Make every `VerifiedKeyCache` of this process look each key up again.

    Call it after the transaction that revoked a key, or disabled or changed a principal or
    tenant, has committed: a lookup that started earlier is then stale too.
    """
    _generation.advance()


@dataclass(frozen=True)
class _Entry:
    stored: StoredKey
    generation: int
    looked_up: float  # the clock's reading before the lookup started


class VerifiedKeyCache:
    """Authenticates bearer tokens as ``security.authentication.authenticate`` does, from
    keys verified less than ``ttl_seconds`` ago when it can.

    ``cached`` never waits (it is called on the event loop); ``authenticate`` queries
    ``engine`` (the maintenance engine: no tenant is known before the key).
    """

    def __init__(
        self,
        engine: Engine,
        ttl_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._ttl = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}

    def cached(self, token: str) -> Caller | None:
        """The caller of ``token`` from a key verified within the bound, without I/O; None
        when the key must be looked up (not kept, too old, forgotten, or its use is due to
        be written). Raises ``NotAuthenticatedError`` for a malformed token, a wrong secret,
        or a kept key revoked or expired by now."""
        key_id, secret = parse_token(token)
        with self._lock:
            entry = self._entries.get(key_id)
        if entry is None or not self._current(entry):
            return None
        now = datetime.now(UTC)
        if use_is_due(entry.stored.last_used_at, now):
            return None
        return admit_key(entry.stored, key_id, secret, now)

    def authenticate(self, token: str) -> Caller:
        """The caller of ``token``, looked up in the database and kept when it authenticates.

        Raises ``NotAuthenticatedError`` as ``security.authentication.authenticate`` does.
        """
        key_id, secret = parse_token(token)
        # Read before the lookup: a change committed during it makes the entry stale.
        generation, looked_up = _generation.value, self._clock()
        stored = load_key(self._engine, key_id)
        now = datetime.now(UTC)
        try:
            caller = admit_key(stored, key_id, secret, now)
        except BaseException:
            with self._lock:
                self._entries.pop(key_id, None)
            raise
        assert stored is not None  # admit_key refuses an unknown key
        if use_is_due(stored.last_used_at, now):
            record_use(self._engine, key_id, now)
            stored = replace(stored, last_used_at=now)
        # Kept even with the cache off (ttl 0): `verified_before` reads it in an outage.
        with self._lock:
            if len(self._entries) >= MAX_CACHED_KEYS:
                self._entries.clear()
            self._entries[key_id] = _Entry(stored, generation, looked_up)
        return caller

    def verified_before(self, token: str) -> Caller | None:
        """For a database outage only: the caller of ``token`` when this process verified its
        key within ``OUTAGE_GRACE_SECONDS`` and has not forgotten it since; None otherwise.
        Raises ``NotAuthenticatedError`` for a malformed token, a wrong secret, or a kept key
        revoked or expired by now (as ``cached``)."""
        key_id, secret = parse_token(token)
        with self._lock:
            entry = self._entries.get(key_id)
        if (
            entry is None
            or entry.generation != _generation.value
            or self._clock() - entry.looked_up >= OUTAGE_GRACE_SECONDS
        ):
            return None
        return admit_key(entry.stored, key_id, secret, datetime.now(UTC))

    def forget(self, key_id: str) -> None:
        """Look ``key_id`` up again on its next request (a request it admitted found its
        tenant or principal disabled: api/problems.py)."""
        with self._lock:
            self._entries.pop(key_id, None)

    def _current(self, entry: _Entry) -> bool:
        return entry.generation == _generation.value and self._clock() - entry.looked_up < self._ttl
