"""The fixed-window throttle (docs/security.md): rules → counter steps → one atomic store call.

Every applicable rule becomes a `ThrottleStep` (its counter key, limit and window). The steps
of one evaluation go to the counter store in one call, and `apply_steps` is the rule for what
that call does, whichever store runs it: steps in order; a counter whose window has elapsed
restarts; a counter at its limit denies, and then every increment made by this evaluation is
undone (window restarts stay). Rules that produce the same key share one counter, so on a deny
a shared count is rolled back too.

Keys are structured (`CounterKey`) rather than the original's bare strings, where a tenant
and a principal with the same id, or ids containing ':', shared a counter by accident. Every
key belongs to one tenant (lower-cased, as tenant ids compare): a principal or API key counts
within its tenant, so two tenants' principals with the same id never share a counter. Their
text form is the original's: `tenant`, `principal`, `tenant:op`, `principal:op`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol, runtime_checkable

import structlog

from hartonomous.config.sections import RateLimitRule, SecuritySettings

_log = structlog.get_logger(__name__)
_NO_WAIT = timedelta(0)


def _is_blank(text: str | None) -> bool:
    return text is None or not text.strip()


@dataclass(frozen=True)
class ThrottleContext:
    tenant_id: str = ""
    principal_id: str = ""
    operation: str = ""
    key_id: str = ""  # the API key of an HTTP request (scope `key`)


def tenant_counter_id(tenant_id: str) -> str:
    """The form a tenant id takes in a counter key: lower case, as tenant ids compare (the
    `tenants` table's unique index is on lower(tenant_id))."""
    return tenant_id.strip().lower()


@dataclass(frozen=True)
class CounterKey:
    """Whose calls a counter counts: a tenant, or a principal or an API key of ``tenant_id``,
    optionally per operation.

    ``tenant_id`` is the tenant the counter belongs to, in `tenant_counter_id` form; for the
    subject ``tenant`` it is ``subject_id`` itself (given or not). Principals and keys are
    counted within their tenant: no counter is shared across tenants.
    """

    subject: Literal["tenant", "principal", "key"]
    subject_id: str
    operation: str | None = None
    tenant_id: str = ""

    def __post_init__(self) -> None:
        if self.subject == "tenant":
            if self.tenant_id not in ("", self.subject_id):
                raise ValueError(
                    f"a tenant counter's tenant_id is its subject_id ({self.subject_id!r}), "
                    f"not {self.tenant_id!r}"
                )
            object.__setattr__(self, "tenant_id", self.subject_id)

    def __str__(self) -> str:
        if self.operation is None:
            return self.subject_id
        return f"{self.subject_id}:{self.operation}"


@dataclass(frozen=True)
class ThrottleStep:
    """One rule's claim on one counter."""

    rule_name: str
    key: CounterKey
    permit_limit: int
    window: timedelta


@dataclass(frozen=True)
class WindowState:
    window_start: datetime
    count: int


@dataclass(frozen=True)
class Quota:
    """What is left of the tightest limit after a decision (the `RateLimit` headers).

    ``policy`` names the rule, ``limit`` and ``window`` are its own, ``remaining`` the permits
    left in the current window and ``reset_after`` the time until that window ends.
    """

    policy: str
    limit: int
    window: timedelta
    remaining: int
    reset_after: timedelta


@dataclass(frozen=True)
class ThrottleDecision:
    is_throttled: bool
    policy: str | None = None
    retry_after: timedelta = _NO_WAIT
    # The tightest applied limit, for callers that report it; not part of the decision itself.
    quota: Quota | None = field(default=None, compare=False)

    @classmethod
    def allow(cls) -> ThrottleDecision:
        return cls(is_throttled=False)

    @classmethod
    def deny(cls, policy: str, retry_after: timedelta) -> ThrottleDecision:
        return cls(is_throttled=True, policy=policy, retry_after=retry_after)


@dataclass(frozen=True)
class StepsOutcome:
    decision: ThrottleDecision
    # Every counter the steps touched, as it must be stored (created, restarted, incremented
    # or rolled back); counters not touched are absent.
    states: dict[CounterKey, WindowState]


def apply_steps(
    states: Mapping[CounterKey, WindowState], steps: Sequence[ThrottleStep], now: datetime
) -> StepsOutcome:
    """The throttle's decision for `steps` given the current counters: pure, no I/O."""
    working: dict[CounterKey, WindowState] = {}
    incremented: list[CounterKey] = []
    for step in steps:
        state = working.get(step.key) or states.get(step.key) or WindowState(now, 0)
        if now - state.window_start >= step.window:
            state = WindowState(now, 0)
        if state.count >= step.permit_limit:
            working[step.key] = state
            # A key incremented by two rules is listed twice and so decremented twice.
            for key in incremented:
                previous = working[key]
                working[key] = WindowState(previous.window_start, max(previous.count - 1, 0))
            retry_after = max(state.window_start + step.window - now, _NO_WAIT)
            quota = Quota(step.rule_name, step.permit_limit, step.window, 0, retry_after)
            denied = ThrottleDecision(True, step.rule_name, retry_after, quota)
            return StepsOutcome(denied, working)
        working[step.key] = WindowState(state.window_start, state.count + 1)
        incremented.append(step.key)
    return StepsOutcome(ThrottleDecision(False, quota=_tightest(working, steps, now)), working)


def _tightest(
    states: Mapping[CounterKey, WindowState], steps: Sequence[ThrottleStep], now: datetime
) -> Quota | None:
    """The limit with the fewest permits left (the latest reset among equals)."""
    quotas = [
        Quota(
            step.rule_name,
            step.permit_limit,
            step.window,
            max(step.permit_limit - states[step.key].count, 0),
            max(states[step.key].window_start + step.window - now, _NO_WAIT),
        )
        for step in steps
    ]
    return min(quotas, key=lambda q: (q.remaining, -q.reset_after), default=None)


class CounterStore(Protocol):
    """Where the fixed-window counters live.

    `acquire` must be atomic over the keys of `steps`: read their counters, run
    `apply_steps`, store every returned state, with no other evaluation interleaving on those
    keys. Then either every increment of the call is applied or (on a deny) none is. An
    in-process store holds a lock; a shared store (PostgreSQL) locks the key rows in one
    transaction, in a fixed key order so that concurrent evaluations cannot deadlock.
    """

    def acquire(self, steps: Sequence[ThrottleStep], now: datetime) -> ThrottleDecision: ...


@runtime_checkable
class HeldPermitStore(Protocol):
    """A `CounterStore` that may hold permits taken ahead from a shared counter (leases)."""

    def acquire_held(self, steps: Sequence[ThrottleStep], now: datetime) -> ThrottleDecision | None:
        """`acquire`'s decision from permits already held, without I/O; None when the store
        must be asked (``acquire``)."""
        ...


class InMemoryCounterStore:
    """Counters of one process, under one lock. Counters are never evicted (as the original)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[CounterKey, WindowState] = {}

    def acquire(self, steps: Sequence[ThrottleStep], now: datetime) -> ThrottleDecision:
        with self._lock:
            outcome = apply_steps(self._counters, steps, now)
            self._counters.update(outcome.states)
        return outcome.decision

    def count(self, key: CounterKey) -> int:
        """The current count of `key` (0 when it has no counter)."""
        with self._lock:
            state = self._counters.get(key)
        return 0 if state is None else state.count


def _rule_applies(rule: RateLimitRule, context: ThrottleContext) -> bool:
    filters = (
        (rule.tenant_id, context.tenant_id),
        (rule.principal_id, context.principal_id),
        (rule.operation, context.operation),
    )
    return all(
        _is_blank(wanted) or wanted.casefold() == actual.casefold()
        for wanted, actual in filters
        if wanted is not None
    )


def counter_key(rule: RateLimitRule, context: ThrottleContext) -> CounterKey | None:
    """The rule's counter for `context`, or None when its subject is blank.

    Every counter is the context's tenant's (`tenant_counter_id`): a principal or a key
    counts within its tenant, so the same principal id in two tenants has two counters.
    """
    operation = context.operation if _is_blank(rule.operation) else rule.operation
    tenant = tenant_counter_id(context.tenant_id)
    if rule.scope == "key":
        if _is_blank(context.key_id):
            return None
        return CounterKey("key", context.key_id, tenant_id=tenant)
    if rule.scope in ("tenant", "tenant_operation"):
        if _is_blank(context.tenant_id):
            return None
        per_operation = operation if rule.scope == "tenant_operation" else None
        return CounterKey("tenant", tenant, per_operation)
    if _is_blank(context.principal_id):
        return None
    per_operation = operation if rule.scope == "principal_operation" else None
    return CounterKey("principal", context.principal_id, per_operation, tenant)


def throttle_steps(rules: Sequence[RateLimitRule], context: ThrottleContext) -> list[ThrottleStep]:
    """The steps of the rules that apply to `context`, in rule order."""
    steps: list[ThrottleStep] = []
    for rule in rules:
        key = counter_key(rule, context) if _rule_applies(rule, context) else None
        if key is not None:
            steps.append(
                ThrottleStep(
                    rule_name=rule.name,
                    key=key,
                    permit_limit=rule.permit_limit,
                    window=timedelta(seconds=rule.window_seconds),
                )
            )
    return steps


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ThrottleEvaluator:
    """Evaluates `[security] rate_limits` against a counter store."""

    def __init__(
        self,
        rules: Sequence[RateLimitRule],
        store: CounterStore,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._rules = tuple(rules)
        self._store = store
        self._clock = clock

    @classmethod
    def from_settings(
        cls,
        security: SecuritySettings,
        store: CounterStore,
        clock: Callable[[], datetime] = _utc_now,
    ) -> ThrottleEvaluator:
        return cls(security.rate_limits, store, clock)

    def evaluate(self, context: ThrottleContext) -> ThrottleDecision:
        steps = throttle_steps(self._rules, context)
        if not steps:
            return ThrottleDecision.allow()
        decision = self._store.acquire(steps, self._clock())
        if decision.is_throttled:
            _log.warning(
                "rate limit exceeded",
                policy=decision.policy,
                retry_after_seconds=decision.retry_after.total_seconds(),
                tenant_id=context.tenant_id,
                principal_id=context.principal_id,
                operation=context.operation,
            )
        return decision
