"""Rate limits of authenticated API requests, from `[[security.rate_limits]]` (docs/security.md).

An API request is throttled as the operation ``api`` of its tenant, principal and key: every
rule whose filters match that context applies (so a rule without an ``operation`` counts API
requests and sync-worker events alike; ``operation = "api"`` limits requests only). When no
rule applies, `DEFAULT_API_RULE` does: the original's fixed window of 100 requests a minute,
here per tenant. Counters are the shared, database-backed ones (`security.counter_store`), so
a limit holds across every API process on the database.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from hartonomous.config.sections import RateLimitRule, SecuritySettings
from hartonomous.security.throttle import (
    CounterStore,
    ThrottleContext,
    ThrottleDecision,
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

    def admit(self, tenant_id: str, principal_id: str, key_id: str) -> ThrottleDecision:
        context = ThrottleContext(tenant_id, principal_id, API_OPERATION, key_id)
        steps = throttle_steps(self._rules, context) or throttle_steps([DEFAULT_API_RULE], context)
        if not steps:
            return ThrottleDecision.allow()
        return self._store.acquire(steps, self._clock())
