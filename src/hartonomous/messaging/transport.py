"""The transport port: where a consumer loop's messages come from and how they are settled.

Two adapters implement it: the in-database broker (`messaging/broker.py`, the default,
`[message_broker] transport = "postgres"`) and an in-memory one for pure-logic tests
(`messaging/memory.py`). Whatever the transport, the effects of a batch and the dead letters
live in PostgreSQL: every settling method takes the handler's database session and writes in
its transaction where the transport is that database; `settled` then runs after the commit
(a log-based transport acknowledges there, so nothing acknowledged can be lost).
docs/messaging.md describes the contract, which tests/integration/messaging/
test_transport_conformance.py checks against each adapter.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import psycopg

from hartonomous.config.sections import MessageBrokerSettings
from hartonomous.messaging.broker import (
    Broker,
    Failure,
    MessageTooLargeError,
    OutgoingMessage,
    ReceivedMessage,
    UnsettledMessage,
)

Connection = psycopg.Connection[Any]


class Transport(Protocol):
    """A queue of CloudEvent messages with per-conversation order (conversation heads only)."""

    @property
    def max_attempts(self) -> int:
        """Deliveries before a failing message is dead-lettered as poison."""
        ...

    def send_batch(self, connection: Any, messages: Sequence[OutgoingMessage]) -> list[int]:
        """Enqueue ``messages`` (visible once the caller's transaction commits, in order)."""
        ...

    def listen(self, connection: Connection) -> None:
        """Prepare a fresh consumer session (the broker LISTENs for sends)."""
        ...

    def wait(self, connection: Connection, seconds: float, stop: threading.Event) -> bool:
        """Idle until something may be available, ``seconds`` pass or ``stop`` is set; False
        when the session failed (the loop reconnects)."""
        ...

    def watch(self, waiting: Callable[[str], None] | None) -> None:
        """Have ``waiting(detail)`` called about every second while the transport waits for
        a service outside the database (Kafka's acknowledgements, an unreachable cluster), so
        the caller's heartbeat beats through the wait (None: stop). The broker: nothing."""
        ...

    def hold(self, seconds: float, stop: threading.Event) -> None:
        """While the sync pause holds the loop: take no work for ``seconds`` (or until
        ``stop``) but keep the transport's session alive. The broker and the memory transport
        just wait; Kafka pauses its assigned partitions and keeps polling, so the consumer
        group keeps this member past `max_poll_interval_seconds` (no rebalance on resume).
        The next `receive` or `wait` takes work again."""
        ...

    def receive(self, connection: Connection, max_messages: int) -> list[ReceivedMessage]:
        """Claim up to ``max_messages`` messages, at most one per conversation."""
        ...

    def complete(self, connection: Connection, messages: Sequence[ReceivedMessage]) -> int:
        """Settle `Complete` in the caller's transaction; the count removed."""
        ...

    def delay(self, connection: Connection, message: ReceivedMessage, seconds: float) -> None:
        """Settle `Delay`: back after ``seconds``, the delivery not counted as an attempt."""
        ...

    def abandon(
        self,
        connection: Connection,
        message: ReceivedMessage,
        error: BaseException | None = None,
        retry_after_seconds: float = 0.0,
    ) -> None:
        """A failed attempt: back after ``retry_after_seconds``, the attempt counted."""
        ...

    def dead_letter(
        self,
        connection: Connection,
        message: ReceivedMessage,
        reason: str,
        failure: Failure | None = None,
        *,
        attempts: int | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> int | None:
        """Settle `DeadLetter`: move to `message_dead_letters`; its id (None if gone)."""
        ...

    def settled(self, messages: Sequence[ReceivedMessage]) -> None:
        """After the transaction that settled ``messages`` committed (the broker: nothing)."""
        ...

    def drained(self) -> bool:
        """After a receive that claimed nothing: whether a drain (`sync --once`) may end.
        The broker: yes (nothing is available now). Kafka: only once the consumer group's
        committed offsets reached the end of every partition of the topic (records this
        process holds back as delayed aside); until then it waits a moment for the group,
        and raises `UnavailableError` naming the partitions when the group stopped moving."""
        ...

    def released(self, messages: Sequence[ReceivedMessage]) -> None:
        """The handler failed before its transaction committed: the settlements of ``messages``
        are void (the broker: its claims stay until the session or the lease ends)."""
        ...

    def unsettled(
        self, connection: Connection, conversations: Collection[str] | None = None
    ) -> list[UnsettledMessage]:
        """The messages sent and not yet settled (waiting, claimed or delayed), of
        ``conversations`` only when given: what a reader of "the queue" must count whatever
        the transport (catch-up's in-flight events, a period close's waiting usage events).
        The broker: the queue's rows. Kafka: the records between the consumer group's
        committed offset and the end of each partition, read without joining the group (a
        record handled but not yet committed counts); raises `UnavailableError` when Kafka
        does not answer within `connect_timeout_seconds`."""
        ...

    def close(self) -> None:
        """Release the transport's clients (the broker: nothing; it uses the loop's session)."""
        ...


@dataclass(frozen=True)
class Published:
    """Where a log acknowledged a record: `destination` (`kafka:<topic>`), partition, offset."""

    destination: str
    partition: int
    offset: int


class RecordTooLargeError(MessageTooLargeError):
    """The log (Kafka) refused a record as too large although it was within the configured
    limit (the cluster's or topic's `max.message.bytes` is lower). Raised by a publish of
    several records when any came back so: nothing of the batch counts as acknowledged, and
    the caller sends them again one at a time (the CES consumer) to find which do not fit."""


@runtime_checkable
class SizeLimited(Protocol):
    """A transport whose limit is on the encoded record (Kafka: bytes, not characters)."""

    def check_size(self, message: OutgoingMessage) -> None:
        """Raise `MessageTooLargeError` (naming the size and the setting) when ``message``
        would be over the limit once encoded."""
        ...


@runtime_checkable
class Publisher(Protocol):
    """A transport outside the database (Kafka): it publishes and acknowledges on its own,
    not in the caller's transaction (dead-letter replay uses it)."""

    def publish(self, messages: Sequence[OutgoingMessage]) -> list[Published]:
        """Publish ``messages`` in order and wait until the log acknowledged each."""
        ...


def open_transport(settings: MessageBrokerSettings) -> Transport:
    """The transport `[message_broker] transport` names: the broker, or Kafka
    (`messaging/kafka.py`, imported only then: the CLI starts without the Kafka client)."""
    if settings.transport == "kafka":
        from hartonomous.messaging.kafka import KafkaTransport

        return KafkaTransport(settings)
    return Broker(settings)


def check_transport(settings: MessageBrokerSettings) -> None:
    """At a service's start: raise `UnavailableError` naming the bootstrap servers when the
    transport is Kafka and the cluster does not answer within `connect_timeout_seconds` (the
    broker lives in the database, which is checked on its own)."""
    if settings.transport == "kafka":
        from hartonomous.messaging.kafka import KafkaTransport

        KafkaTransport(settings).check_reachable()
