"""The consumer loop over the in-memory transport (pure logic: fake session, fake clock)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, cast

import psycopg
import pytest

from hartonomous.config.sections import ResilienceSettings
from hartonomous.messaging.broker import Failure, OutgoingMessage, ReceivedMessage
from hartonomous.messaging.consumer import Connection, ConsumerLoop
from hartonomous.messaging.memory import InMemoryTransport
from hartonomous.messaging.pump import BatchOutcome
from hartonomous.messaging.resilience import CircuitBreakerOpenError, ResilienceStrategy
from hartonomous.messaging.settlement import Complete, DeadLetter, Delay, Settlement


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeSession:
    """What the loop asks of its session: whether it is closed or broken, and close."""

    def __init__(self) -> None:
        self.closed = False
        self.broken = False

    def close(self) -> None:
        self.closed = True


@dataclass
class ScriptedHandler:
    """Settles each message as `decide` says (by its body), as a batch handler must."""

    transport: InMemoryTransport
    decide: dict[str, Settlement]
    seen: list[tuple[str, int]] = field(default_factory=list)
    fail_with: Exception | None = None

    def empty(self) -> BatchOutcome:
        return BatchOutcome()

    def close(self) -> None:
        pass

    def handle(self, connection: Connection, messages: list[ReceivedMessage]) -> BatchOutcome:
        if self.fail_with is not None:
            raise self.fail_with
        counts = BatchOutcome()
        done = []
        for message in messages:
            self.seen.append((message.body, message.attempts))
            settlement = self.decide.get(message.body, Complete())
            if isinstance(settlement, Delay):
                self.transport.delay(connection, message, settlement.seconds)
                counts.delayed += 1
            elif isinstance(settlement, DeadLetter):
                self.transport.dead_letter(
                    connection, message, settlement.reason, Failure(None, settlement.detail, None)
                )
                counts.dead_lettered += 1
            else:
                done.append(message)
        counts.completed = self.transport.complete(connection, done)
        return counts


def make_loop(
    transport: InMemoryTransport, handler: ScriptedHandler, clock: Clock
) -> tuple[ConsumerLoop[BatchOutcome], list[FakeSession]]:
    sessions: list[FakeSession] = []

    def connector() -> Connection:
        sessions.append(FakeSession())
        return cast(Connection, sessions[-1])

    settings = ResilienceSettings(receive_max_attempts=1, circuit_breaker_failure_threshold=2)
    strategy = ResilienceStrategy.from_settings(settings, clock=clock, sleep=lambda _s: None)
    loop = ConsumerLoop(
        url="memory://",
        transport=transport,
        handler=handler,
        strategy=strategy,
        name="test",
        application_name="test",
        batch_size=2,
        idle_wait_seconds=0.01,
        connector=connector,
    )
    return loop, sessions


def send(transport: InMemoryTransport, *bodies: str, conversation: str | None = None) -> None:
    transport.send_batch(None, [OutgoingMessage(b, conversation_id=conversation) for b in bodies])


def test_drain_settles_with_the_one_vocabulary_in_conversation_order() -> None:
    clock = Clock()
    transport = InMemoryTransport(clock=clock)
    send(transport, "a1", "a2", "a3", conversation="a")
    send(transport, "b1", "denied", conversation="b")
    handler = ScriptedHandler(
        transport, {"a2": Delay(60), "denied": DeadLetter("policy_denied:p", "no")}
    )
    loop, _ = make_loop(transport, handler, clock)
    totals = loop.drain()
    # a2 is delayed: it holds a3 (same conversation) but not conversation b.
    assert [body for body, _ in handler.seen] == ["a1", "b1", "a2", "denied"]
    assert (totals.completed, totals.delayed, totals.dead_lettered) == (2, 1, 1)
    assert [letter.reason for letter in transport.dead_letters] == ["policy_denied:p"]
    clock.now += 61
    handler.decide.clear()
    assert loop.drain().completed == 2
    # The delay did not count as an attempt: a2 came back as its first attempt again.
    assert handler.seen[-2:] == [("a2", 1), ("a3", 1)]
    assert transport.pending == 0


def test_a_lost_session_is_reopened_and_repeated_losses_open_the_breaker() -> None:
    clock = Clock()
    transport = InMemoryTransport(clock=clock)
    send(transport, "m1")
    handler = ScriptedHandler(transport, {})
    loop, sessions = make_loop(transport, handler, clock)
    handler.fail_with = psycopg.OperationalError("server closed the connection unexpectedly")
    for session_count in (1, 2):
        loop.connection()
        sessions[-1].broken = True
        with pytest.raises(psycopg.OperationalError):
            loop.run_once()
        assert len(sessions) == session_count
        assert sessions[-1].closed
    with pytest.raises(CircuitBreakerOpenError):
        loop.run_once()  # open: no batch is even claimed
    handler.fail_with = None
    clock.now += 3600  # past the break: the half-open probe goes through
    assert loop.run_once().completed == 1
    assert handler.seen == [("m1", 3)]  # each lost claim counted its attempt
    assert transport.pending == 0


def test_run_stops_on_signal_and_a_fatal_error_ends_it() -> None:
    clock = Clock()
    transport = InMemoryTransport(clock=clock)
    handler = ScriptedHandler(transport, {})
    loop, _ = make_loop(transport, handler, clock)
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,))
    thread.start()
    send(transport, "m1", "m2", "m3")
    while transport.pending:
        stop.wait(0.01)
    stop.set()
    thread.join(10)
    assert not thread.is_alive()
    assert sorted(body for body, _ in handler.seen) == ["m1", "m2", "m3"]

    class StoppedError(Exception):
        """A fatal error (as the sync worker's unwritable ledger)."""

    loop.fatal = (StoppedError,)
    handler.fail_with = StoppedError("ledger unwritable")
    send(transport, "m4")
    with pytest.raises(StoppedError):
        loop.run(threading.Event())


def test_in_memory_dead_letter_of_a_settled_message_is_refused() -> None:
    transport = InMemoryTransport()
    send(transport, "m1")
    [message] = transport.receive(cast(Any, None), 5)
    transport.complete(None, [message])
    assert transport.dead_letter(None, message, "late") is None
    assert transport.dead_letters == []
