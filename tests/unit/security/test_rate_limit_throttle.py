"""Fixed-window throttle (digest §5): the original's pinned cases and the store contract."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

import pytest
from structlog.testing import capture_logs

from hartonomous.config.sections import RateLimitRule, SecuritySettings
from hartonomous.security.throttle import (
    CounterKey,
    CounterStore,
    InMemoryCounterStore,
    ThrottleContext,
    ThrottleDecision,
    ThrottleEvaluator,
    ThrottleStep,
    WindowState,
    apply_steps,
    throttle_steps,
)

START = datetime(2025, 11, 3, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


class FakeClock:
    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


class InspectableStore(CounterStore, Protocol):
    def count(self, key: CounterKey) -> int: ...


# Every counter store must pass these; a PostgreSQL store (with `count`) joins this list.
STORES: list[Callable[[], InspectableStore]] = [InMemoryCounterStore]


def limit(name: str, **options: object) -> RateLimitRule:
    return RateLimitRule.model_validate({"name": name, **options})


def evaluator(store: CounterStore, clock: FakeClock, *rules: RateLimitRule) -> ThrottleEvaluator:
    return ThrottleEvaluator(rules, store, clock)


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest) -> InspectableStore:
    factory: Callable[[], InspectableStore] = request.param
    return factory()


def test_pinned_no_rules_allow(store: InspectableStore) -> None:
    throttle = ThrottleEvaluator.from_settings(SecuritySettings(), store, FakeClock())
    assert throttle.evaluate(ThrottleContext(tenant_id="tenant-a")) == ThrottleDecision.allow()
    assert store.count(CounterKey("tenant", "tenant-a")) == 0


def test_pinned_two_per_minute_throttles_the_third_call(store: InspectableStore) -> None:
    clock = FakeClock()
    throttle = evaluator(
        store, clock, limit("tenant-limit", scope="tenant", permit_limit=2, window_seconds=60)
    )
    context = ThrottleContext(tenant_id="tenant-a", operation="ingest")
    assert not throttle.evaluate(context).is_throttled
    clock.advance(timedelta(seconds=10))
    assert not throttle.evaluate(context).is_throttled
    clock.advance(timedelta(seconds=5))
    with capture_logs() as logs:
        third = throttle.evaluate(context)
    assert third == ThrottleDecision.deny("tenant-limit", timedelta(seconds=45))
    assert logs[0]["event"] == "rate limit exceeded"
    assert logs[0]["log_level"] == "warning"
    clock.now = START + MINUTE
    assert not throttle.evaluate(context).is_throttled


def test_pinned_tenant_operation_scope_leaves_other_operations_alone(
    store: InspectableStore,
) -> None:
    throttle = evaluator(
        store, FakeClock(), limit("tenant-operation", scope="tenant_operation", permit_limit=1)
    )
    ingest = ThrottleContext(tenant_id="tenant-a", operation="ingest")
    assert not throttle.evaluate(ingest).is_throttled
    assert throttle.evaluate(ingest).is_throttled
    assert not throttle.evaluate(
        ThrottleContext(tenant_id="tenant-a", operation="search")
    ).is_throttled


def test_pinned_shared_key_is_rolled_back_when_a_later_rule_denies(
    store: InspectableStore,
) -> None:
    throttle = evaluator(
        store,
        FakeClock(),
        limit("first", scope="tenant", permit_limit=1),
        limit("second", scope="tenant", permit_limit=0),
    )
    context = ThrottleContext(tenant_id="tenant-a")
    for _ in range(3):
        with capture_logs():
            decision = throttle.evaluate(context)
        assert decision.is_throttled
        assert decision.policy == "second"
        assert store.count(CounterKey("tenant", "tenant-a")) == 0


def test_rules_sharing_a_key_each_count_a_call(store: InspectableStore) -> None:
    # As in the original: one counter per key, incremented once per applicable rule.
    throttle = evaluator(
        store,
        FakeClock(),
        limit("a", scope="tenant", permit_limit=2),
        limit("b", scope="tenant", permit_limit=2),
    )
    context = ThrottleContext(tenant_id="tenant-a")
    assert not throttle.evaluate(context).is_throttled
    assert store.count(CounterKey("tenant", "tenant-a")) == 2
    with capture_logs():
        assert throttle.evaluate(context).policy == "a"


def test_earlier_increments_on_other_keys_are_rolled_back(store: InspectableStore) -> None:
    throttle = evaluator(
        store,
        FakeClock(),
        limit("per-principal", scope="principal", permit_limit=5),
        limit("per-tenant-op", scope="tenant_operation", permit_limit=1),
    )
    context = ThrottleContext(tenant_id="t", principal_id="p", operation="op")
    assert not throttle.evaluate(context).is_throttled
    with capture_logs():
        assert throttle.evaluate(context).policy == "per-tenant-op"
    assert store.count(CounterKey("principal", "p", tenant_id="t")) == 1
    assert store.count(CounterKey("tenant", "t", "op")) == 1


def test_tenant_and_principal_counters_never_collide(store: InspectableStore) -> None:
    throttle = evaluator(
        store,
        FakeClock(),
        limit("tenant", scope="tenant", permit_limit=1),
        limit("principal", scope="principal", permit_limit=1),
    )
    assert not throttle.evaluate(
        ThrottleContext(tenant_id="same", principal_id="same")
    ).is_throttled
    assert store.count(CounterKey("tenant", "same")) == 1
    assert store.count(CounterKey("principal", "same", tenant_id="same")) == 1


@pytest.mark.parametrize("scope", ["principal", "principal_operation", "key"])
def test_principal_and_key_counters_are_per_tenant(store: InspectableStore, scope: str) -> None:
    throttle = evaluator(store, FakeClock(), limit("one", scope=scope, permit_limit=1))
    context = ThrottleContext(tenant_id="a", principal_id="p", operation="op", key_id="k")
    assert not throttle.evaluate(context).is_throttled
    with capture_logs():
        assert throttle.evaluate(context).is_throttled
    other_tenant = ThrottleContext(tenant_id="b", principal_id="p", operation="op", key_id="k")
    assert not throttle.evaluate(other_tenant).is_throttled


def test_tenant_ids_in_counters_ignore_case(store: InspectableStore) -> None:
    """Tenant ids compare case-insensitively (a unique index on lower(tenant_id)): 'Acme' and
    'acme' are one tenant, so one counter, for a tenant rule and for a principal's."""
    throttle = evaluator(
        store,
        FakeClock(),
        limit("tenant", scope="tenant", permit_limit=1),
        limit("principal", scope="principal", permit_limit=5),
    )
    assert not throttle.evaluate(ThrottleContext("Acme", "p")).is_throttled
    with capture_logs():
        assert throttle.evaluate(ThrottleContext("acme", "p")).policy == "tenant"
    assert store.count(CounterKey("tenant", "acme")) == 1
    assert store.count(CounterKey("principal", "p", tenant_id="acme")) == 1


def test_filters_ignore_case_and_blank_filters_match_everything(
    store: InspectableStore,
) -> None:
    rules = [
        limit("acme-only", tenant_id="ACME", permit_limit=0),
        limit("bob-only", scope="principal", principal_id="Bob", permit_limit=0),
        limit("ingest-only", operation="INGEST", permit_limit=0),
        limit("blank-filter", tenant_id="  ", operation="", permit_limit=0),
    ]
    names = [
        step.rule_name for step in throttle_steps(rules, ThrottleContext("acme", "bob", "ingest"))
    ]
    assert names == ["acme-only", "bob-only", "ingest-only", "blank-filter"]
    names = [
        step.rule_name for step in throttle_steps(rules, ThrottleContext("other", "x", "search"))
    ]
    assert names == ["blank-filter"]


def test_blank_subjects_skip_the_rule() -> None:
    rules = [
        limit("tenant", scope="tenant"),
        limit("tenant-op", scope="tenant_operation"),
        limit("principal", scope="principal"),
        limit("principal-op", scope="principal_operation"),
    ]
    steps = throttle_steps(rules, ThrottleContext(tenant_id=" ", principal_id="p", operation="o"))
    assert [(s.rule_name, s.key) for s in steps] == [
        ("principal", CounterKey("principal", "p")),
        ("principal-op", CounterKey("principal", "p", "o")),
    ]


def test_keys_use_the_rule_operation_else_the_context_operation() -> None:
    rules = [
        limit("fixed", scope="tenant_operation", operation="ingest"),
        limit("context", scope="principal_operation"),
    ]
    steps = throttle_steps(rules, ThrottleContext("t", "p", "ingest"))
    assert [str(step.key) for step in steps] == ["t:ingest", "p:ingest"]
    assert steps[0].window == MINUTE
    assert steps[0].permit_limit == 60


def test_a_window_restart_stays_when_the_evaluation_is_denied() -> None:
    key = CounterKey("tenant", "t")
    states = {key: WindowState(START, 3)}
    steps = [
        ThrottleStep("restarts", key, permit_limit=5, window=MINUTE),
        ThrottleStep("denies", CounterKey("principal", "p"), permit_limit=0, window=MINUTE),
    ]
    later = START + 2 * MINUTE
    outcome = apply_steps(states, steps, later)
    assert outcome.decision == ThrottleDecision.deny("denies", MINUTE)
    assert outcome.states == {
        key: WindowState(later, 0),
        CounterKey("principal", "p"): WindowState(later, 0),
    }


def test_retry_after_counts_from_the_window_start() -> None:
    key = CounterKey("tenant", "t")
    step = ThrottleStep("limit", key, permit_limit=1, window=timedelta(seconds=30))
    outcome = apply_steps({key: WindowState(START, 1)}, [step], START + timedelta(seconds=29))
    assert outcome.decision.retry_after == timedelta(seconds=1)
    outcome = apply_steps({key: WindowState(START, 1)}, [step], START + timedelta(seconds=30))
    assert not outcome.decision.is_throttled


def test_concurrent_evaluations_never_exceed_the_limit(store: InspectableStore) -> None:
    throttle = evaluator(store, FakeClock(), limit("limit", scope="tenant", permit_limit=50))
    allowed: list[bool] = []
    lock = threading.Lock()

    def call() -> None:
        decision = throttle.evaluate(ThrottleContext(tenant_id="t"))
        with lock:
            allowed.append(not decision.is_throttled)

    threads = [threading.Thread(target=call) for _ in range(200)]
    with capture_logs():
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert allowed.count(True) == 50
    assert store.count(CounterKey("tenant", "t")) == 50


def test_the_decision_reports_the_tightest_limit_left() -> None:
    store = InMemoryCounterStore()
    wide = ThrottleStep("wide", CounterKey("tenant", "t"), 10, timedelta(hours=1))
    narrow = ThrottleStep("narrow", CounterKey("key", "k1"), 2, MINUTE)
    first = store.acquire([wide, narrow], START)
    assert first.quota is not None
    assert (first.quota.policy, first.quota.remaining, first.quota.reset_after) == (
        "narrow",
        1,
        MINUTE,
    )
    store.acquire([wide, narrow], START + timedelta(seconds=15))
    denied = store.acquire([wide, narrow], START + timedelta(seconds=20))
    assert denied.is_throttled
    assert denied.quota is not None
    assert (denied.quota.policy, denied.quota.remaining, denied.quota.limit) == ("narrow", 0, 2)
    assert denied.quota.reset_after == timedelta(seconds=40) == denied.retry_after
    # The quota does not take part in comparing decisions.
    assert first == ThrottleDecision.allow()


def test_key_scope_counts_each_key_apart() -> None:
    per_key = limit("per-key", scope="key", permit_limit=1)
    assert throttle_steps([per_key], ThrottleContext("t", "p", "api", key_id="")) == []
    [step] = throttle_steps([per_key], ThrottleContext("t", "p", "api", key_id="k1"))
    assert step.key == CounterKey("key", "k1", tenant_id="t")
    throttle = evaluator(InMemoryCounterStore(), FakeClock(), per_key)
    assert not throttle.evaluate(ThrottleContext("t", "p", "api", key_id="k1")).is_throttled
    assert throttle.evaluate(ThrottleContext("t", "p", "api", key_id="k1")).is_throttled
    assert not throttle.evaluate(ThrottleContext("t", "p", "api", key_id="k2")).is_throttled
