"""Retry formula, breaker states and transient classification (pure logic, fake clock)."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy.exc import OperationalError as SqlAlchemyOperationalError

from hartonomous.config.sections import ResilienceSettings
from hartonomous.messaging.kafka import KafkaUnavailableError
from hartonomous.messaging.resilience import (
    BreakerState,
    CircuitBreaker,
    CircuitBreakerOpenError,
    ResilienceStrategy,
    RetryPolicy,
    already_waited,
    is_transient,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def transient() -> psycopg.Error:
    return psycopg.errors.SerializationFailure("could not serialize access")


def policy(random_value: float, sleeps: list[float] | None = None) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=3,
        base_delay=0.25,
        max_delay=10.0,
        factor=2.0,
        jitter_factor=0.2,
        sleep=(sleeps.append if sleeps is not None else lambda _s: None),
        random=lambda: random_value,
    )


def test_delay_follows_the_original_formula() -> None:
    middle = policy(0.5)  # jitter 0
    assert [middle.delay(n) for n in (1, 2, 3, 10)] == [0.25, 0.5, 1.0, 10.0]
    assert policy(1.0).delay(3) == pytest.approx(1.2)  # +20 %
    assert policy(0.0).delay(1) == 0.25  # never below the base delay


def test_retries_only_transient_errors_and_rethrows_the_last() -> None:
    sleeps: list[float] = []
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        raise transient()

    with pytest.raises(psycopg.errors.SerializationFailure):
        policy(0.5, sleeps).execute(flaky)
    assert len(calls) == 3
    assert sleeps == [0.25, 0.5]  # no wait after the last attempt

    calls.clear()

    def broken() -> str:
        calls.append(1)
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        policy(0.5).execute(broken)
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (psycopg.errors.AdminShutdown("x"), True),
        (psycopg.errors.TooManyConnections("x"), True),
        (psycopg.errors.DeadlockDetected("x"), True),
        (psycopg.errors.QueryCanceled("statement timeout"), True),
        (psycopg.errors.LockNotAvailable("x"), True),
        (psycopg.OperationalError("connection lost"), True),
        (TimeoutError(), True),
        (psycopg.errors.UniqueViolation("dup"), False),
        (psycopg.errors.SyntaxError("x"), False),
        (ValueError("x"), False),
    ],
)
def test_classification_by_sqlstate(error: BaseException, expected: bool) -> None:
    assert is_transient(error) is expected


def test_wrapped_errors_are_classified_by_their_cause() -> None:
    wrapped = SqlAlchemyOperationalError("SELECT 1", {}, psycopg.errors.AdminShutdown("x"))
    assert is_transient(wrapped)
    outer = RuntimeError("outer")
    outer.__cause__ = psycopg.errors.DeadlockDetected("x")
    assert is_transient(outer)


def breaker(clock: Clock, successes: int = 1) -> CircuitBreaker:
    return CircuitBreaker("db", 3, 30.0, successes, clock=clock)


def fail(cb: CircuitBreaker, error: Exception) -> None:
    def raise_it() -> None:
        raise error

    with pytest.raises(type(error)):
        cb.execute(raise_it)


def test_breaker_opens_half_opens_and_closes() -> None:
    clock = Clock()
    cb = breaker(clock)
    for _ in range(2):
        fail(cb, transient())
    cb.execute(lambda: None)  # a success resets: failures must be consecutive
    for _ in range(3):
        fail(cb, transient())
    assert cb.state is BreakerState.OPEN
    with pytest.raises(CircuitBreakerOpenError, match="is open"):
        cb.execute(lambda: None)
    clock.now = 30.0
    assert cb.state is BreakerState.HALF_OPEN
    fail(cb, transient())  # the probe fails: open again
    assert cb.state is BreakerState.OPEN
    clock.now = 60.0
    assert cb.execute(lambda: "ok") == "ok"
    assert cb.state is BreakerState.CLOSED


def test_non_transient_errors_do_not_count_and_never_wedge_the_probe() -> None:
    clock = Clock()
    cb = breaker(clock, successes=2)
    for _ in range(5):
        fail(cb, ValueError("bad input"))
    assert cb.state is BreakerState.CLOSED
    for _ in range(3):
        fail(cb, transient())
    clock.now = 31.0
    fail(cb, ValueError("probe hits a bug"))  # the original stayed half-open forever here
    cb.execute(lambda: None)
    assert cb.state is BreakerState.HALF_OPEN  # one of two required successes
    cb.execute(lambda: None)
    assert cb.state is BreakerState.CLOSED


def test_only_one_probe_at_a_time() -> None:
    clock = Clock()
    cb = breaker(clock)
    for _ in range(3):
        fail(cb, transient())
    clock.now = 30.0

    def probe() -> None:
        with pytest.raises(CircuitBreakerOpenError):
            cb.execute(lambda: None)

    cb.execute(probe)  # a second call while the probe is in flight is refused
    assert cb.state is BreakerState.CLOSED


def test_strategy_wraps_retry_inside_the_breaker() -> None:
    clock = Clock()
    settings = ResilienceSettings(receive_max_attempts=2, circuit_breaker_failure_threshold=2)
    strategy = ResilienceStrategy.from_settings(settings, clock=clock, sleep=lambda _s: None)
    calls: list[int] = []

    def flaky() -> None:
        calls.append(1)
        raise transient()

    for _ in range(2):
        with pytest.raises(psycopg.errors.SerializationFailure):
            strategy.run_receive(flaky)
    assert len(calls) == 4  # one breaker failure = one exhausted retry sequence
    assert strategy.breaker.state is BreakerState.OPEN


def test_an_error_that_already_waited_its_timeout_counts_for_the_breaker_at_once() -> None:
    # A Kafka client retried the cluster for connect_timeout_seconds before raising: another
    # attempt would wait the same again, so each such failure is one breaker failure.
    clock = Clock()
    settings = ResilienceSettings(receive_max_attempts=5, circuit_breaker_failure_threshold=2)
    strategy = ResilienceStrategy.from_settings(settings, clock=clock, sleep=lambda _s: None)
    calls: list[int] = []

    def away() -> None:
        calls.append(1)
        raise KafkaUnavailableError("Kafka at 127.0.0.1:9 did not acknowledge", waited_seconds=10)

    for _ in range(2):
        with pytest.raises(KafkaUnavailableError):
            strategy.run_receive(away)
    assert len(calls) == 2
    assert strategy.breaker.state is BreakerState.OPEN
    # Wrapped, it is known by its cause; one that failed at once is retried as before.
    wrapped = RuntimeError("batch failed")
    wrapped.__cause__ = KafkaUnavailableError("away", waited_seconds=1.0)
    assert already_waited(wrapped)
    assert not already_waited(KafkaUnavailableError("went away"))
    assert is_transient(KafkaUnavailableError("went away"))
