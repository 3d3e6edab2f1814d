"""Rate limits on `/v1`: 429 problems with `Retry-After`, and the `RateLimit` headers.

Every response to a limited request carries, in the structured-field form of the IETF
httpapi-ratelimit-headers draft (docs/security.md, "Rate limits of API requests")::

    RateLimit-Policy: "default";q=100;w=60      the tightest rule: quota q per w seconds
    RateLimit: "default";r=42;t=17              r requests left, the window resets in t seconds

An exhausted limit answers 429 (``RateLimitedError``) with ``Retry-After`` in seconds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from hartonomous.errors import RateLimitedError
from hartonomous.security.authentication import Caller
from hartonomous.security.request_limits import RequestLimiter
from hartonomous.security.throttle import Quota

__all__ = ["enforce_rate_limit", "rate_limit_headers"]

_STATE = "rate_limit_quota"


async def enforce_rate_limit(request: Request, caller: Caller) -> None:
    """Count the request against its limits; ``RateLimitedError`` (429) when one is spent.

    Decided on the event loop from permits this process holds (a lease,
    security/counter_store.py) when it can, in a worker thread on the shared counters when not.
    """
    limiter: RequestLimiter | None = getattr(request.app.state, "rate_limiter", None)
    if limiter is None:
        return
    who = (caller.tenant_id, caller.principal_id, caller.key_id)
    decision = limiter.admit_held(*who)
    if decision is None:
        decision = await run_in_threadpool(limiter.admit, *who)
    quota = decision.quota
    setattr(request.state, _STATE, quota)
    if decision.is_throttled:
        wait = max(math.ceil(decision.retry_after.total_seconds()), 1)
        limit = (
            f"{quota.limit} requests per {_seconds(quota.window.total_seconds())} s"
            if quota is not None
            else "its limit"
        )
        raise RateLimitedError(
            f"rate limit {decision.policy or 'default'!r} exceeded ({limit}): retry in {wait} s",
            retry_after_seconds=wait,
        )


def rate_limit_headers(state: Mapping[str, Any]) -> dict[str, str]:
    """`RateLimit-Policy` and `RateLimit` for a request whose ``scope["state"]`` is ``state``;
    empty when no limit applied to it (unauthenticated routes, refusals before the key)."""
    quota: Quota | None = state.get(_STATE)
    if quota is None:
        return {}
    name = _sf_string(quota.policy)
    return {
        "RateLimit-Policy": f"{name};q={quota.limit};w={_seconds(quota.window.total_seconds())}",
        "RateLimit": f"{name};r={quota.remaining};t={_seconds(quota.reset_after.total_seconds())}",
    }


def _seconds(value: float) -> int:
    return math.ceil(value)


def _sf_string(text: str) -> str:
    # An RFC 8941 sf-string: printable ASCII, with `"` and `\` escaped.
    printable = "".join(c if " " <= c <= "~" else "?" for c in text)
    return '"' + printable.replace("\\", "\\\\").replace('"', '\\"') + '"'
