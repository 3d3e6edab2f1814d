"""Rate limits of authenticated API requests, from `[[security.rate_limits]]` (docs/security.md).

An API request is throttled as the operation ``api`` of its tenant, principal and key: every
rule whose filters match that context applies (so a rule without an ``operation`` counts API
requests and sync-worker events alike; ``operation = "api"`` limits requests only). When no
rule applies, `DEFAULT_API_RULE` does: the original's fixed window of 100 requests a minute,
here per tenant. Counters are the shared, database-backed ones (`security.counter_store`), so
a limit holds across every API process on the database.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from hartonomous.config.sections import RateLimitRule, SecuritySettings
from hartonomous.security.throttle import (
    CounterStore,
    HeldPermitStore,
    ThrottleContext,
    ThrottleDecision,
    ThrottleStep,
    throttle_steps,
)

__all__ = ["API_OPERATION", "DEFAULT_API_RULE", "RequestLimiter"]

API_OPERATION = "api"
DEFAULT_API_RULE = RateLimitRule(
    name="default",
    scope="tenant_operation",
    operation=API_OPERATION,
    permit_limit=100,
    window_seconds=60,
)


MAX_CACHED_CALLERS = 10_000
"""Callers whose steps one limiter keeps at most; past it it starts again empty."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


class RequestLimiter:
    """Admits or throttles one authenticated request; the decision carries the tightest
    limit's ``quota`` (for the `RateLimit` headers) whenever any limit applied."""

    def __init__(
        self,
        security: SecuritySettings,
        store: CounterStore,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._rules = tuple(security.rate_limits)
        self._store = store
        self._clock = clock
        # Looked up once: a runtime protocol check per request costs more than the lease.
        self._held = store.acquire_held if isinstance(store, HeldPermitStore) else None
        # The steps of a caller depend only on the rules, fixed here: worked out once per
        # caller, not on every request (the event loop decides most requests).
        self._steps_of: dict[tuple[str, str, str], tuple[ThrottleStep, ...]] = {}

    def admit(self, tenant_id: str, principal_id: str, key_id: str) -> ThrottleDecision:
        """Count the request on the shared counters (may wait on the database)."""
        steps = self._steps(tenant_id, principal_id, key_id)
        if not steps:
            return ThrottleDecision.allow()
        return self._store.acquire(steps, self._clock())

    def admit_held(self, tenant_id: str, principal_id: str, key_id: str) -> ThrottleDecision | None:
        """``admit``'s decision from permits this process already holds, without I/O (to
        decide on the event loop); None when the shared counters must be asked (``admit``)."""
        steps = self._steps(tenant_id, principal_id, key_id)
        if not steps:
            return ThrottleDecision.allow()
        if self._held is None:
            return None
        return self._held(steps, self._clock())

    def _steps(self, tenant_id: str, principal_id: str, key_id: str) -> Sequence[ThrottleStep]:
        who = (tenant_id, principal_id, key_id)
        steps = self._steps_of.get(who)
        if steps is None:
            context = ThrottleContext(tenant_id, principal_id, API_OPERATION, key_id)
            steps = tuple(
                throttle_steps(self._rules, context) or throttle_steps([DEFAULT_API_RULE], context)
            )
            if len(self._steps_of) >= MAX_CACHED_CALLERS:
                self._steps_of.clear()
            self._steps_of[who] = steps
        return steps
