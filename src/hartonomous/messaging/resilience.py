"""Retry with exponential backoff and jitter, and a circuit breaker (docs/messaging.md).

Kept from the original: the delay formula, breaker(retry(op)) ordering (one breaker failure is
one exhausted retry sequence), consecutive-failure counting, a single half-open probe, and that
only transient errors count. Fixed: a non-transient error during the half-open probe no longer
leaves the breaker stuck half-open; the probe slot is always released.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

import psycopg
import structlog

from hartonomous.config.sections import ResilienceSettings

log = structlog.get_logger(__name__)
T = TypeVar("T")

# SQLSTATEs worth retrying: the server or connection went away, contention, or a timeout.
TRANSIENT_SQLSTATES = frozenset(
    {
        "57P01",  # admin_shutdown
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now
        "53300",  # too_many_connections
        "53400",  # configuration_limit_exceeded
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "57014",  # query_canceled (statement_timeout)
        "55P03",  # lock_not_available (lock_timeout)
        "25P03",  # idle_in_transaction_session_timeout
    }
)
_CONNECTION_EXCEPTION_CLASS = "08"


def is_transient(exc: BaseException) -> bool:
    """True for errors a retry may cure; follows wrapped causes (SQLAlchemy's `.orig`, chains)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _is_transient_here(current):
            return True
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return False


def already_waited(exc: BaseException) -> bool:
    """True when an error of ``exc``'s chain already waited out its own timeout (it carries
    ``waited_seconds``, as `KafkaUnavailableError` does after a Kafka client retried for
    `connect_timeout_seconds`): a retry at once would wait the same again, so `RetryPolicy`
    hands it to the circuit breaker at once, which counts it as one failure, as it counts an
    exhausted retry of a refused PostgreSQL connection."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if getattr(current, "waited_seconds", None) is not None:
            return True
        current = current.__cause__
    return False


def _is_transient_here(exc: BaseException) -> bool:
    # ConnectionError: a transport whose server went away (the Kafka transport raises one).
    if isinstance(exc, TimeoutError | ConnectionError | psycopg.errors.ConnectionTimeout):
        return True
    if isinstance(exc, psycopg.Error):
        sqlstate = exc.sqlstate
        if sqlstate is None:
            # No SQLSTATE: the client lost or could not open the connection.
            return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
        return sqlstate in TRANSIENT_SQLSTATES or sqlstate.startswith(_CONNECTION_EXCEPTION_CLASS)
    return False


@dataclass(frozen=True)
class RetryPolicy:
    """`max_attempts` tries; waits `max(base, d + jitter)` with d = min(base·factor^(n-1), max)."""

    max_attempts: int
    base_delay: float
    max_delay: float
    factor: float
    jitter_factor: float
    sleep: Callable[[float], None] = time.sleep
    random: Callable[[], float] = lambda: secrets.randbelow(1 << 30) / float(1 << 30)
    # Which errors a retry may cure; other services than PostgreSQL (Neo4j) pass their own.
    transient: Callable[[BaseException], bool] = is_transient

    def delay(self, attempt: int) -> float:
        """The wait after failed attempt `attempt` (1-based)."""
        d = min(self.base_delay * self.factor ** (attempt - 1), self.max_delay)
        jitter = d * self.jitter_factor * (2 * self.random() - 1)
        return max(self.base_delay, d + jitter)

    def execute(self, operation: Callable[[], T], name: str = "operation") -> T:
        attempt = 1
        while True:
            try:
                return operation()
            except Exception as exc:
                if not self.transient(exc) or attempt >= self.max_attempts or already_waited(exc):
                    raise
                wait = self.delay(attempt)
                log.warning(
                    "transient_failure_retrying",
                    operation=name,
                    attempt=attempt,
                    wait_seconds=round(wait, 3),
                    error=f"{type(exc).__name__}: {exc}",
                )
                self.sleep(wait)
                attempt += 1


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreakerOpenError(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"circuit breaker {name!r} is open: operation is temporarily blocked "
            "after repeated transient failures"
        )


class CircuitBreaker:
    """Closed → (threshold consecutive transient failures) → open → (break duration) →
    half-open (one probe) → closed after `half_open_successes`, or open again on failure."""

    def __init__(
        self,
        name: str,
        failure_threshold: int,
        break_duration: float,
        half_open_successes: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        transient: Callable[[BaseException], bool] = is_transient,
    ) -> None:
        self.name = name
        self._transient = transient
        self._threshold = failure_threshold
        self._break_duration = break_duration
        self._half_open_successes = half_open_successes
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._successes = 0
        self._open_until = 0.0
        self._probe_in_flight = False

    @property
    def state(self) -> BreakerState:
        with self._lock:
            if self._state is BreakerState.OPEN and self._clock() >= self._open_until:
                return BreakerState.HALF_OPEN
            return self._state

    def execute(self, operation: Callable[[], T]) -> T:
        probe = self._admit()
        try:
            result = operation()
        except Exception as exc:
            self._on_failure(probe, transient=self._transient(exc))
            raise
        self._on_success(probe)
        return result

    def _admit(self) -> bool:
        """Let a call through or raise; True when the call is the half-open probe."""
        with self._lock:
            if self._state is BreakerState.OPEN:
                if self._clock() < self._open_until:
                    raise CircuitBreakerOpenError(self.name)
                self._state = BreakerState.HALF_OPEN
                self._successes = 0
            if self._state is BreakerState.HALF_OPEN:
                if self._probe_in_flight:
                    raise CircuitBreakerOpenError(self.name)
                self._probe_in_flight = True
                return True
            return False

    def _on_success(self, probe: bool) -> None:
        with self._lock:
            if probe:
                self._probe_in_flight = False
                self._successes += 1
                if self._successes >= self._half_open_successes:
                    self._state = BreakerState.CLOSED
                    self._failures = 0
                    log.info("circuit_breaker_closed", breaker=self.name)
            else:
                self._failures = 0

    def _on_failure(self, probe: bool, transient: bool) -> None:
        with self._lock:
            if probe:
                # Always release the probe slot (the original leaked it on non-transient errors).
                self._probe_in_flight = False
            if not transient:
                return
            if probe:
                self._open()
                return
            self._failures += 1
            if self._state is BreakerState.CLOSED and self._failures >= self._threshold:
                self._open()

    def _open(self) -> None:
        self._state = BreakerState.OPEN
        self._open_until = self._clock() + self._break_duration
        self._failures = 0
        log.warning("circuit_breaker_opened", breaker=self.name, seconds=self._break_duration)


@dataclass
class ResilienceStrategy:
    """breaker(retry(op)) for publishing and receiving, sharing one breaker (as the original)."""

    publish: RetryPolicy
    receive: RetryPolicy
    breaker: CircuitBreaker

    @classmethod
    def from_settings(
        cls,
        settings: ResilienceSettings,
        name: str = "postgresql",
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> ResilienceStrategy:
        def policy(attempts: int, base: float, ceiling: float) -> RetryPolicy:
            return RetryPolicy(
                max_attempts=attempts,
                base_delay=base,
                max_delay=ceiling,
                factor=settings.exponential_factor,
                jitter_factor=settings.jitter_factor,
                sleep=sleep,
            )

        return cls(
            publish=policy(
                settings.publish_max_attempts,
                settings.publish_base_delay_seconds,
                settings.publish_max_delay_seconds,
            ),
            receive=policy(
                settings.receive_max_attempts,
                settings.receive_base_delay_seconds,
                settings.receive_max_delay_seconds,
            ),
            breaker=CircuitBreaker(
                name,
                failure_threshold=settings.circuit_breaker_failure_threshold,
                break_duration=settings.circuit_breaker_break_duration_seconds,
                half_open_successes=settings.circuit_breaker_half_open_success_threshold,
                clock=clock,
            ),
        )

    def run_publish(self, operation: Callable[[], T], name: str = "publish") -> T:
        return self.breaker.execute(lambda: self.publish.execute(operation, name))

    def run_receive(self, operation: Callable[[], T], name: str = "receive") -> T:
        return self.breaker.execute(lambda: self.receive.execute(operation, name))
