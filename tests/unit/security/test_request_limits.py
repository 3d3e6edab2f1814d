"""`RequestLimiter` (security/request_limits.py) keeps each caller's steps: the limits must
still be each caller's own, as the rules scope them."""

from __future__ import annotations

from datetime import UTC, datetime

from hartonomous.config.sections import RateLimitRule, SecuritySettings
from hartonomous.security.request_limits import RequestLimiter
from hartonomous.security.throttle import InMemoryCounterStore

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _limiter(*rules: RateLimitRule) -> RequestLimiter:
    return RequestLimiter(
        SecuritySettings(rate_limits=list(rules)), InMemoryCounterStore(), clock=lambda: NOW
    )


def test_each_key_is_counted_apart_under_a_per_key_rule() -> None:
    limiter = _limiter(RateLimitRule(name="per-key", scope="key", permit_limit=1))
    assert not limiter.admit("acme", "ann", "k1").is_throttled
    assert not limiter.admit("acme", "ann", "k2").is_throttled
    assert limiter.admit("acme", "ann", "k1").is_throttled
    assert limiter.admit("acme", "ann", "k2").is_throttled
    assert not limiter.admit("acme", "ann", "k3").is_throttled


def test_keys_of_one_tenant_share_a_per_tenant_rule_and_tenants_do_not() -> None:
    limiter = _limiter(RateLimitRule(name="per-tenant", scope="tenant", permit_limit=2))
    assert not limiter.admit("acme", "ann", "k1").is_throttled
    assert not limiter.admit("acme", "bob", "k2").is_throttled
    refused = limiter.admit("acme", "ann", "k1")
    assert refused.is_throttled
    assert refused.policy == "per-tenant"
    assert not limiter.admit("umbrella", "ann", "k1").is_throttled


def test_without_rules_the_default_applies_per_tenant() -> None:
    limiter = _limiter()
    decisions = [limiter.admit("acme", "ann", f"k{n % 3}") for n in range(101)]
    assert [d.is_throttled for d in decisions] == [False] * 100 + [True]
    assert decisions[-1].policy == "default"
    assert not limiter.admit("umbrella", "ann", "k0").is_throttled
