"""The consumer loop: one way to consume a transport, used by every consumer of the broker.

A loop owns its database session (reconnected after a loss) and turns: claim a batch from the
transport (`messaging/transport.py`), hand it to a batch handler, which settles each message
in its transaction with the one vocabulary of `messaging/settlement.py` (complete, delay,
dead-letter; a raised error is a failed attempt), then tell the transport the batch is settled
(`Transport.settled`, after the commit). Each batch runs through the receive retry and the
circuit breaker of `[message_broker.resilience]`, so a lost connection opens the breaker
instead of spinning. `drain` handles batches until nothing is available now; `run` serves
until a stop signal, with the lifecycle that every background service shares
(`messaging/lifecycle.py`: heartbeat, sync pause, failure wait). docs/messaging.md.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, Self, TypeVar

import psycopg

from hartonomous.config.sections import DatabaseSettings
from hartonomous.db.connection import connect
from hartonomous.messaging.broker import ReceivedMessage
from hartonomous.messaging.heartbeat import Heartbeat
from hartonomous.messaging.lifecycle import serve
from hartonomous.messaging.resilience import ResilienceStrategy, is_transient
from hartonomous.messaging.spans import untraced
from hartonomous.messaging.transport import Transport

Connection = psycopg.Connection[Any]
# The longest pause of a loop whose last batch all waits for an unavailable dependency.
_WAITING_PAUSE_SECONDS = 1.0


class Outcome(Protocol):
    """What a batch handler reports of one batch (counts of messages)."""

    @property
    def received(self) -> int:
        """Messages the batch held."""
        ...

    @property
    def waiting(self) -> int:
        """Messages put back because a dependency is unavailable (the loop slows down)."""
        ...

    def add(self, other: Self) -> None:
        """Add ``other``'s counts to these."""
        ...


OutcomeT = TypeVar("OutcomeT", bound=Outcome)
OutcomeT_co = TypeVar("OutcomeT_co", bound=Outcome, covariant=True)


class BatchHandler(Protocol[OutcomeT_co]):
    """Settles a claimed batch in the session's transaction(s) and reports the counts."""

    def handle(self, connection: Connection, messages: list[ReceivedMessage]) -> OutcomeT_co:
        """Settle every message of ``messages`` (each exactly once) and commit."""
        ...

    def empty(self) -> OutcomeT_co:
        """The outcome of no batch."""
        ...

    def close(self) -> None:
        """Release what the handler holds (its own sessions)."""
        ...


@dataclass
class ConsumerLoop(Generic[OutcomeT]):
    """One consumer: its session, its transport, its batch handler."""

    url: str
    transport: Transport
    handler: BatchHandler[OutcomeT]
    strategy: ResilienceStrategy
    # Names the loop in logs and retries (`<name>.batch`, `<name>_batch_failed`): "sync".
    name: str
    application_name: str
    batch_size: int = 100
    # How long an idle loop waits for new work before looking again (seconds).
    idle_wait_seconds: float = 5.0
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    # The session's class (the pump's lazily-saving `PumpConnection`).
    connection_class: type[Connection] = psycopg.Connection
    # Errors that end `run` instead of being retried (the sync worker's unwritable ledger).
    fatal: tuple[type[BaseException], ...] = ()
    # Opens the session instead of `db.connection.connect` (pure-logic tests' fake session).
    connector: Callable[[], Connection] | None = None
    _connection: Connection | None = field(default=None, init=False)

    def connection(self) -> Connection:
        if self._connection is None or self._connection.closed:
            connection = (
                self.connector()
                if self.connector is not None
                else connect(
                    self.url,
                    self.database,
                    application_name=self.application_name,
                    connection_class=self.connection_class,
                )
            )
            self.transport.listen(connection)
            self._connection = connection
        return self._connection

    def disconnect(self) -> None:
        """Close the session (claims of a closed session become orphans, taken back later)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def close(self) -> None:
        self.disconnect()
        self.handler.close()
        self.transport.close()

    def run_once(self) -> OutcomeT:
        """Claim one batch and settle it; raises after the retry and breaker gave up."""

        def attempt() -> OutcomeT:
            connection = self.connection()
            messages: list[ReceivedMessage] = []
            try:
                # A receive is a poll that mostly claims nothing (its statements, the
                # low-water mark's pg_locks reads included, would bury every other span): it
                # is not traced; the handling of what it claimed is (`process` spans).
                with untraced():
                    messages = self.transport.receive(connection, self.batch_size)
                if not messages:
                    return self.handler.empty()
                outcome = self.handler.handle(connection, messages)
            except Exception as exc:
                if messages:
                    self.transport.released(messages)
                if is_transient(exc) and connection.broken:
                    self.disconnect()  # a timeout keeps the session; a lost one reconnects
                raise
            self.transport.settled(messages)
            return outcome

        return self.strategy.run_receive(attempt, f"{self.name}.batch")

    def drain(self) -> OutcomeT:
        """Handle batches until the transport says nothing is left (`Transport.drained`: for
        a log, until the consumer group's committed offsets reach its end), or until every
        message of a batch waits for an unavailable dependency."""
        totals = self.handler.empty()
        while True:
            outcome = self.run_once()
            totals.add(outcome)
            if outcome.received == 0:
                if self.transport.drained():
                    return totals
            elif outcome.received == outcome.waiting:
                return totals

    def run(
        self, stop: threading.Event, heartbeat: Heartbeat | None = None, *, pausable: bool = False
    ) -> None:
        """Serve until ``stop`` is set, beating ``heartbeat`` each turn; while ``pausable`` and
        the sync pause is on, claim nothing. Raises an error of `fatal`."""

        def rest(outcome: OutcomeT) -> None:
            if outcome.received == 0:
                if not self.transport.wait(self.connection(), self.idle_wait_seconds, stop):
                    self.disconnect()
            elif outcome.waiting:
                stop.wait(min(self.idle_wait_seconds, _WAITING_PAUSE_SECONDS))

        if heartbeat is not None:
            # A wait for Kafka beats `failing` through the wait instead of going silent.
            self.transport.watch(lambda detail: heartbeat.beat("failing", detail))
        try:
            serve(
                stop,
                heartbeat,
                self.run_once,
                rest,
                failure_wait=self.idle_wait_seconds,
                failure_event=f"{self.name}_batch_failed",
                pause_connection=self.connection if pausable else None,
                fatal=self.fatal,
                hold=lambda seconds: self.transport.hold(seconds, stop),
            )
        finally:
            self.close()
