"""The message pump: receive a batch, dispatch each CloudEvent, settle it (design §7).

One batch is one transaction: each handler runs in a savepoint and the completions are
committed together with whatever the handlers wrote, so a handled message and its effects
commit or vanish together. A handler failure rolls back to the savepoint and either abandons
the message (retried after a backoff) or, at the poison limit, dead-letters it with the
exception's type, message and traceback. A malformed CloudEvent is dead-lettered at once: no
retry can make it valid, and it must not hold up the messages behind it.

The savepoint is set lazily, just before the handler's first statement (`savepoint.py`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from cloudevents.core.v1.event import CloudEvent

from hartonomous.config.sections import DatabaseSettings
from hartonomous.messaging.broker import (
    POISON_REASON,
    Broker,
    Connection,
    Failure,
    ReceivedMessage,
)
from hartonomous.messaging.envelope import MalformedMessageError, parse_cloudevent
from hartonomous.messaging.notify import listening_connection, wait_for_notify
from hartonomous.messaging.resilience import ResilienceStrategy, is_transient
from hartonomous.messaging.savepoint import HandlerSavepoint, PumpConnection

log = structlog.get_logger(__name__)

Handler = Callable[[CloudEvent, ReceivedMessage, Connection], None]


class DelayMessageError(Exception):
    """Raised by a handler to postpone a message (throttling): not a failed attempt."""

    def __init__(self, seconds: float, reason: str = "throttled") -> None:
        super().__init__(reason)
        self.seconds = seconds


class HandlerLeftTransactionAbortedError(Exception):
    """A handler swallowed a database error: its writes are undone and the attempt failed."""


class RejectMessageError(Exception):
    """Raised by a handler to dead-letter a message at once (e.g. `policy_denied:<policy>`)."""

    def __init__(self, reason: str, metadata: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.metadata = metadata or {}


def acknowledge(_event: CloudEvent, _message: ReceivedMessage, _connection: Connection) -> None:
    """The handler used until a projection registers one: valid events are simply completed."""


@dataclass(frozen=True)
class BatchOutcome:
    completed: int = 0
    abandoned: int = 0
    delayed: int = 0
    dead_lettered: int = 0

    @property
    def received(self) -> int:
        return self.completed + self.abandoned + self.delayed + self.dead_lettered


@dataclass
class MessagePump:
    """One worker: its own connection, LISTENing for sends while idle."""

    url: str
    broker: Broker
    handler: Handler = acknowledge
    batch_size: int = 50
    strategy: ResilienceStrategy | None = None
    # The session's connect, statement and lock timeouts (`[database]`).
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    _connection: PumpConnection | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.strategy is None:
            self.strategy = ResilienceStrategy.from_settings(self.broker.settings.resilience)

    @property
    def resilience(self) -> ResilienceStrategy:
        assert self.strategy is not None
        return self.strategy

    def connection(self) -> PumpConnection:
        if self._connection is None or self._connection.closed:
            self._connection = listening_connection(
                PumpConnection, self.url, self.broker.channel, "hartonomous-broker", self.database
            )
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def run_once(self) -> BatchOutcome:
        """Receive one batch and settle every message of it."""

        def attempt() -> BatchOutcome:
            try:
                return self._handle_batch(self.connection())
            except Exception as exc:
                if is_transient(exc):
                    self.close()  # a broken session's claims become orphans; reconnect
                raise

        return self.resilience.run_receive(attempt, "broker.batch")

    def drain(self) -> BatchOutcome:
        """Handle batches until the queue has nothing available (tests, `--once` style runs)."""
        totals = BatchOutcome()
        while True:
            outcome = self.run_once()
            if outcome.received == 0:
                return totals
            totals = BatchOutcome(
                totals.completed + outcome.completed,
                totals.abandoned + outcome.abandoned,
                totals.delayed + outcome.delayed,
                totals.dead_lettered + outcome.dead_lettered,
            )

    def run(self, stop: threading.Event) -> None:
        """Serve until `stop` is set; idle waits end early on NOTIFY."""
        wait = self.broker.settings.receive_wait_timeout_seconds
        try:
            while not stop.is_set():
                try:
                    outcome = self.run_once()
                except Exception as exc:  # noqa: BLE001 - the service outlives any one failure
                    log.error("broker_batch_failed", error=f"{type(exc).__name__}: {exc}")
                    stop.wait(wait)
                    continue
                idle = outcome.received == 0
                if idle and not wait_for_notify(self.connection(), wait, stop):
                    self.close()
        finally:
            self.close()

    def _handle_batch(self, connection: PumpConnection) -> BatchOutcome:
        messages = self.broker.receive(connection, self.batch_size)
        if not messages:
            return BatchOutcome()
        done: list[ReceivedMessage] = []
        abandoned = delayed = dead = 0
        savepoint = HandlerSavepoint(connection)
        with connection.transaction():
            for message in messages:
                verdict = self._handle_one(connection, message, savepoint)
                if verdict == "completed":
                    done.append(message)
                elif verdict == "abandoned":
                    abandoned += 1
                elif verdict == "delayed":
                    delayed += 1
                else:
                    dead += 1
            self.broker.complete(connection, done)
        return BatchOutcome(len(done), abandoned, delayed, dead)

    def _handle_one(
        self, connection: Connection, message: ReceivedMessage, savepoint: HandlerSavepoint
    ) -> str:
        try:
            event = parse_cloudevent(message.body)
        except MalformedMessageError as exc:
            log.warning("broker_malformed_message", message_id=message.message_id, reason=str(exc))
            self.broker.dead_letter(connection, message, str(exc), Failure.of(exc))
            return "dead_lettered"
        savepoint.arm()
        try:
            self.handler(event, message, connection)
            if savepoint.left_aborted():
                raise HandlerLeftTransactionAbortedError(
                    "the handler returned normally after a database error left its "
                    "transaction aborted"
                )
        except DelayMessageError as delay:
            savepoint.settle(failed=True)
            self.broker.delay(connection, message, delay.seconds)
            return "delayed"
        except RejectMessageError as rejection:
            savepoint.settle(failed=True)
            self.broker.dead_letter(
                connection,
                message,
                rejection.reason,
                Failure.of(rejection),
                metadata=rejection.metadata,
            )
            return "dead_lettered"
        except Exception as exc:
            if is_transient(exc) and connection.broken:
                raise
            savepoint.settle(failed=True)
            return self._failed(connection, message, exc)
        savepoint.settle(failed=False)
        return "completed"

    def _failed(self, connection: Connection, message: ReceivedMessage, exc: Exception) -> str:
        limit = self.broker.max_attempts
        log.warning(
            "broker_handler_failed",
            message_id=message.message_id,
            attempt=message.attempts,
            max_attempts=limit,
            error=f"{type(exc).__name__}: {exc}",
        )
        if message.attempts >= limit:
            self.broker.dead_letter(
                connection, message, POISON_REASON.format(max_attempts=limit), Failure.of(exc)
            )
            return "dead_lettered"
        retry_after = self.resilience.receive.delay(message.attempts)
        self.broker.abandon(connection, message, exc, retry_after)
        return "abandoned"


def describe(outcome: BatchOutcome) -> dict[str, Any]:
    return {
        "completed": outcome.completed,
        "abandoned": outcome.abandoned,
        "delayed": outcome.delayed,
        "dead_lettered": outcome.dead_lettered,
    }
