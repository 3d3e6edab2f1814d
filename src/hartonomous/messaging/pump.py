"""The message pump: a consumer loop whose batch handler settles each CloudEvent alone.

`message_pump` builds a `ConsumerLoop` (`messaging/consumer.py`) over the in-database broker
with a `CloudEventHandler`: per message, a handler function answers a settlement
(`messaging/settlement.py`; None means `Complete`). One batch is one transaction: each
handler runs in a savepoint and the completions are committed together with whatever the
handlers wrote, so a handled message and its effects commit or vanish together. A handler
that raises rolls back to the savepoint and either gives the message back (retried after a
backoff) or, at the poison limit, dead-letters it with the exception's type, message and
traceback. A malformed CloudEvent is dead-lettered at once: no retry can make it valid, and
it must not hold up the messages behind it.

The savepoint is set lazily, just before the handler's first statement (`savepoint.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Self

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
from hartonomous.messaging.consumer import ConsumerLoop
from hartonomous.messaging.envelope import MalformedMessageError, parse_cloudevent
from hartonomous.messaging.resilience import ResilienceStrategy, is_transient
from hartonomous.messaging.savepoint import HandlerSavepoint, PumpConnection
from hartonomous.messaging.settlement import Complete, DeadLetter, Delay, Settlement
from hartonomous.messaging.transport import Transport

log = structlog.get_logger(__name__)

Handler = Callable[[CloudEvent, ReceivedMessage, Connection], Settlement | None]
"""Handles one event in the batch's transaction; returns how to settle it (None: Complete)."""


class HandlerLeftTransactionAbortedError(Exception):
    """A handler swallowed a database error: its writes are undone and the attempt failed."""


@dataclass
class BatchOutcome:
    """Counts of one batch (or of a drain): how its messages were settled."""

    completed: int = 0
    abandoned: int = 0
    delayed: int = 0
    dead_lettered: int = 0

    @property
    def received(self) -> int:
        return self.completed + self.abandoned + self.delayed + self.dead_lettered

    @property
    def waiting(self) -> int:
        return 0

    def add(self, other: Self) -> None:
        self.completed += other.completed
        self.abandoned += other.abandoned
        self.delayed += other.delayed
        self.dead_lettered += other.dead_lettered


@dataclass
class CloudEventHandler:
    """A `BatchHandler` calling ``handler`` once per CloudEvent, each in its own savepoint."""

    transport: Transport
    handler: Handler
    strategy: ResilienceStrategy

    def empty(self) -> BatchOutcome:
        return BatchOutcome()

    def close(self) -> None:
        """Nothing held: the loop owns the session."""

    def handle(self, connection: Connection, messages: list[ReceivedMessage]) -> BatchOutcome:
        assert isinstance(connection, PumpConnection)
        outcome = BatchOutcome()
        done: list[ReceivedMessage] = []
        savepoint = HandlerSavepoint(connection)
        with connection.transaction():
            for message in messages:
                settlement = self._handle_one(connection, message, savepoint, outcome)
                if isinstance(settlement, Complete):
                    done.append(message)
                elif settlement is not None:
                    self._settle(connection, message, settlement, outcome)
            self.transport.complete(connection, done)
            outcome.completed = len(done)
        return outcome

    def _handle_one(
        self,
        connection: PumpConnection,
        message: ReceivedMessage,
        savepoint: HandlerSavepoint,
        outcome: BatchOutcome,
    ) -> Settlement | None:
        """The message's settlement, or None when it is already settled (malformed: dead
        letter; failed: given back or, at the poison limit, dead letter)."""
        try:
            event = parse_cloudevent(message.body)
        except MalformedMessageError as exc:
            log.warning("broker_malformed_message", message_id=message.message_id, reason=str(exc))
            self.transport.dead_letter(connection, message, str(exc), Failure.of(exc))
            outcome.dead_lettered += 1
            return None
        savepoint.arm()
        try:
            settlement = self.handler(event, message, connection) or Complete()
            if savepoint.left_aborted():
                raise HandlerLeftTransactionAbortedError(
                    "the handler returned normally after a database error left its "
                    "transaction aborted"
                )
        except Exception as exc:
            if is_transient(exc) and connection.broken:
                raise
            savepoint.settle(failed=True)
            self._failed(connection, message, exc, outcome)
            return None
        # A delayed or dead-lettered message's writes are undone: only completions commit.
        savepoint.settle(failed=not isinstance(settlement, Complete))
        return settlement

    def _settle(
        self,
        connection: Connection,
        message: ReceivedMessage,
        settlement: Delay | DeadLetter,
        outcome: BatchOutcome,
    ) -> None:
        if isinstance(settlement, Delay):
            self.transport.delay(connection, message, settlement.seconds)
            outcome.delayed += 1
            return
        self.transport.dead_letter(
            connection,
            message,
            settlement.reason,
            Failure(None, settlement.detail or None, None),
            metadata=settlement.metadata,
        )
        outcome.dead_lettered += 1

    def _failed(
        self,
        connection: Connection,
        message: ReceivedMessage,
        exc: Exception,
        outcome: BatchOutcome,
    ) -> None:
        limit = self.transport.max_attempts
        log.warning(
            "broker_handler_failed",
            message_id=message.message_id,
            attempt=message.attempts,
            max_attempts=limit,
            error=f"{type(exc).__name__}: {exc}",
        )
        if message.attempts >= limit:
            self.transport.dead_letter(
                connection, message, POISON_REASON.format(max_attempts=limit), Failure.of(exc)
            )
            outcome.dead_lettered += 1
            return
        retry_after = self.strategy.receive.delay(message.attempts)
        self.transport.abandon(connection, message, exc, retry_after)
        outcome.abandoned += 1


def acknowledge(
    _event: CloudEvent, _message: ReceivedMessage, _connection: Connection
) -> Settlement | None:
    """A handler that completes every valid event (benchmarks of the broker alone)."""
    return None


def message_pump(
    url: str,
    broker: Broker,
    handler: Handler = acknowledge,
    *,
    batch_size: int = 50,
    strategy: ResilienceStrategy | None = None,
    database: DatabaseSettings | None = None,
) -> ConsumerLoop[BatchOutcome]:
    """A consumer loop over ``broker`` settling each CloudEvent with ``handler``."""
    strategy = strategy or ResilienceStrategy.from_settings(broker.settings.resilience)
    return ConsumerLoop(
        url=url,
        transport=broker,
        handler=CloudEventHandler(broker, handler, strategy),
        strategy=strategy,
        name="broker",
        application_name="hartonomous-broker",
        batch_size=batch_size,
        idle_wait_seconds=broker.settings.receive_wait_timeout_seconds,
        database=database or DatabaseSettings(),
        connection_class=PumpConnection,
    )
