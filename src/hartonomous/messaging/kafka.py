"""The Kafka transport (`messaging/transport.py`): CloudEvents on a Kafka topic.

Producing (the CES consumer): each message is one Kafka record in the CloudEvents Kafka
protocol binding's structured mode: the value is the CloudEvent as JSON, header
`content-type: application/cloudevents+json; charset=UTF-8`, key = the conversation key, so
one row's events land in one partition, in order. The producer is idempotent (`acks=all`,
`enable.idempotence`), and `send_batch` returns only when the broker acknowledged every record
(delivery reports): the CES consumer calls it inside the transaction that moves its WAL
checkpoint, so the checkpoint never passes an event Kafka does not hold.

Consuming (sync workers): a consumer group (`consumer_group`), offsets committed by hand only
in `settled`, after the database transaction that wrote the batch's effects committed, and
only up to the first record not yet settled in each partition; asynchronously, and waiting
(at most `connect_timeout_seconds`) for the cluster's answer where they must be known to have
landed (before `drained` reads the group's lag, at `close`, after a failed asynchronous
commit). Records are buffered in this
process and handed out as the broker does (docs/messaging.md): only the head of each
conversation (key), a delayed record holding back its own conversation but not the
partition's others; `delay` and `abandon` keep the record in the buffer until it is due. A
record that is not a CloudEvent reaches the handler as text, and its dead letter goes to
`message_dead_letters` with the reason (`dead_letter`), so the partition moves on. Delivery is
at least once (a crash redelivers what was not committed); effects are exactly once through
their event-id keys (docs/sync.md). Attempts are counted in this process only.

An unreachable cluster at start raises `KafkaUnavailableError` (an `UnavailableError`)
naming the bootstrap servers; so does a cluster that goes away mid-run, which the consumer
loop's retry and circuit breaker count as transient until it returns.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

import structlog
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from hartonomous.config.sections import KafkaSettings, MessageBrokerSettings
from hartonomous.errors import UnavailableError
from hartonomous.json_types import exact_dumps
from hartonomous.messaging.broker import (
    Broker,
    Connection,
    ExactRecord,
    Failure,
    MessageTooLargeError,
    OutgoingMessage,
    ReceivedMessage,
    UnsettledMessage,
    dead_letter_unsent,
)
from hartonomous.messaging.envelope import UnreadableBody
from hartonomous.messaging.transport import Published, RecordTooLargeError
from hartonomous.storable import NotStorableError, loads_storable, storable_json, storable_text

log = structlog.get_logger(__name__)

CONTENT_TYPE = "application/cloudevents+json; charset=UTF-8"
MESSAGE_TYPE_HEADER = "hartonomous-message-type"
_POLL_SLICE_SECONDS = 0.25
_FETCH_SLICE_SECONDS = 0.1
_DRAIN_POLL_SECONDS = 0.05
# How often a wait for the cluster (`publish`, `check_reachable`) beats `watch`.
_WAIT_SLICE_SECONDS = 1.0
# The longest wait of one receive for records it knows are there (a hang guard).
_RECEIVE_WAIT_SECONDS = 60.0
# Room for a record batch's framing above the largest record (`max_message_bytes`).
_BATCH_HEADROOM_BYTES = 10_000
State = Literal["ready", "claimed", "done", "delayed", "abandoned"]


class KafkaUnavailableError(UnavailableError, ConnectionError):
    """Kafka did not answer (unreachable, gone away, or did not acknowledge a batch): a
    transient error, so the receive retry and circuit breaker count it. ``waited_seconds``:
    how long the client already waited for the cluster (None: failed at once); such an error
    is not retried at once but counted by the breaker (`resilience.already_waited`)."""

    def __init__(self, message: str, *, waited_seconds: float | None = None) -> None:
        super().__init__(message)
        self.waited_seconds = waited_seconds


class KafkaUnknownTopicError(KafkaUnavailableError, LookupError):
    """The cluster answers but has no topic `[message_broker.kafka] topic`: Hartonomous does
    not create it (docs/messaging.md, "The Kafka topic")."""

    def __init__(self, kafka: KafkaSettings) -> None:
        super().__init__(
            f"UnknownTopic: Kafka at {kafka.bootstrap_servers} has no topic {kafka.topic!r} "
            "([message_broker.kafka] topic): create it with as many partitions as sync "
            'workers may run (docs/messaging.md, "The Kafka topic")'
        )


# What `_group_lag` asks of each partition: its start and its end (high watermark).
_START: Any = OffsetSpec.earliest()  # type: ignore[no-untyped-call]
_END: Any = OffsetSpec.latest()  # type: ignore[no-untyped-call]
# Errors of a delivery or a fetch that mean the topic is not there.
_NO_TOPIC = frozenset({KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC})
# Errors of an admin client's ask that a new client's fresh metadata answers.
_STALE_LEADER = frozenset(
    {
        KafkaError.FENCED_LEADER_EPOCH,
        KafkaError.UNKNOWN_LEADER_EPOCH,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
    }
)
# Errors of a consume that mean the cluster is away, not that one record is bad.
_CLUSTER_AWAY = frozenset({KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT})


@dataclass
class _Record:
    message: ReceivedMessage
    partition: int
    offset: int
    # The record as it came (value, key, headers) and its timestamp (ms since the epoch):
    # its dead letter keeps them, and a replay publishes exactly them.
    exact: ExactRecord = field(default_factory=lambda: ExactRecord(None, None))
    timestamp_ms: int = 0
    available_at: float = 0.0
    claimed: bool = False
    # What the current transaction settled it as, applied by `settled` after the commit.
    staged: tuple[State, float] | None = None


@dataclass
class KafkaTransport:
    """One topic of one Kafka cluster (`[message_broker.kafka]`)."""

    settings: MessageBrokerSettings
    _producer: Producer | None = field(default=None, init=False)
    _consumer: Consumer | None = field(default=None, init=False)
    _probe: Consumer | None = field(default=None, init=False)
    _admin: AdminClient | None = field(default=None, init=False)
    # Buffered records by message id, in arrival order (ids grow with arrival).
    _records: dict[int, _Record] = field(default_factory=dict, init=False)
    _consumed: dict[int, int] = field(default_factory=dict, init=False)
    # Offsets per partition handed to a commit (`settled`, asynchronous) and those the
    # cluster confirmed; a commit that failed is kept until `settled` commits again and waits.
    _commit_sent: dict[int, int] = field(default_factory=dict, init=False)
    _commit_confirmed: dict[int, int] = field(default_factory=dict, init=False)
    _commit_failure: KafkaError | None = field(default=None, init=False)
    # Inside a rebalance callback: a commit is sent, not waited for (`_commit`).
    _rebalancing: bool = field(default=False, init=False)
    # librdkafka answered a commit with "nothing to commit" (`_commit_done`).
    _nothing_to_commit: bool = field(default=False, init=False)
    _next_id: int = field(default=1, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    # Called while a wait for the cluster lasts (`watch`): the caller's heartbeat.
    _waiting: Callable[[str], None] | None = field(default=None, init=False)
    # Whether `hold` paused the assigned partitions (the sync pause); the next take resumes.
    _held: bool = field(default=False, init=False)
    # The lag `drained` last saw (partition, committed, end) and since when (monotonic s).
    _stall: tuple[tuple[tuple[int, int, int], ...], float] | None = field(default=None, init=False)

    @property
    def kafka(self) -> KafkaSettings:
        return self.settings.kafka

    @property
    def max_attempts(self) -> int:
        return self.settings.resilience.poison_message_max_attempts

    # -- the client configuration -------------------------------------------------------------

    def _client_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "bootstrap.servers": self.kafka.bootstrap_servers,
            "security.protocol": self.kafka.security_protocol,
            "socket.connection.setup.timeout.ms": int(self.kafka.connect_timeout_seconds * 1000),
            # None of librdkafka's own log lines (a connection refused is one per retry on
            # stderr): the transport raises and logs what matters itself.
            "log_level": 0,
        }
        if self.kafka.ssl_ca_location is not None:
            config["ssl.ca.location"] = self.kafka.ssl_ca_location
        if self.kafka.sasl_mechanism is not None:
            config["sasl.mechanism"] = self.kafka.sasl_mechanism
            config["sasl.username"] = self.kafka.sasl_username
            config["sasl.password"] = self.kafka.sasl_password.get_secret_value()
        return config

    def watch(self, waiting: Callable[[str], None] | None) -> None:
        """Call ``waiting(detail)`` about every second while this transport waits for the
        cluster (an unacknowledged batch, an unreachable cluster), so the caller's heartbeat
        beats through the wait; None stops it."""
        self._waiting = waiting

    def _still_waiting(self, started: float, what: str) -> None:
        if self._waiting is not None:
            self._waiting(
                f"waiting for Kafka at {self.kafka.bootstrap_servers} ({what}) for "
                f"{time.monotonic() - started:.0f} s"
            )

    def check_reachable(self) -> None:
        """Raise `UnavailableError` naming the bootstrap servers unless the cluster answers
        within `connect_timeout_seconds` (asked each second meanwhile, beating `watch`), and
        `KafkaUnknownTopicError` (naming the topic and the servers) when it has no topic
        `[message_broker.kafka] topic`. Asks for every topic's metadata, never for the one
        topic: that ask would let a broker with `auto.create.topics.enable` create it with one
        partition."""
        # The client's own errors (served by its polls): a handshake that failed names a
        # security protocol that does not match the listener's.
        errors: list[KafkaError] = []
        config: dict[str, Any] = {**self._client_config(), "error_cb": errors.append}
        admin = AdminClient(config)
        started = time.monotonic()
        deadline = started + self.kafka.connect_timeout_seconds
        while True:
            try:
                metadata = admin.list_topics(
                    timeout=min(_WAIT_SLICE_SECONDS, deadline - time.monotonic())
                )
                break
            except KafkaException as exc:
                if time.monotonic() < deadline - _FETCH_SLICE_SECONDS:
                    self._still_waiting(started, "unreachable")
                    continue
                admin.poll(0)
                raise KafkaUnavailableError(
                    f"Kafka is unreachable at {self.kafka.bootstrap_servers} "
                    f"([message_broker.kafka] bootstrap_servers): {exc.args[0].str()}"
                    + _protocol_mismatch(self.kafka.security_protocol, errors),
                    waited_seconds=round(time.monotonic() - started, 3),
                ) from exc
        if self.kafka.topic not in metadata.topics:
            raise KafkaUnknownTopicError(self.kafka)

    # -- producing ----------------------------------------------------------------------------

    def producer(self) -> Producer:
        if self._producer is None:
            self.check_reachable()
            self._producer = Producer(
                {
                    **self._client_config(),
                    "enable.idempotence": self.kafka.idempotent_producer,
                    "acks": "all",
                    # The client's own limit per record batch: the configured record size and
                    # the batch framing's headroom (never below librdkafka's default).
                    "message.max.bytes": max(
                        1_000_000, self.kafka.max_message_bytes + _BATCH_HEADROOM_BYTES
                    ),
                    # Without idempotence a retried request could land after a later one.
                    **({} if self.kafka.idempotent_producer else {"max.in.flight": 1}),
                }
            )
        return self._producer

    def check_size(self, message: OutgoingMessage) -> None:
        """Raise `MessageTooLargeError` when ``message``'s record (value, key and headers, in
        bytes) is over `[message_broker.kafka] max_message_bytes`."""
        self._encode(message, Broker(self.settings))

    def _encode(
        self, message: OutgoingMessage, serialiser: Broker
    ) -> tuple[bytes | None, bytes | None, list[tuple[str, str | bytes | None]]]:
        value: bytes | None
        headers: list[tuple[str, str | bytes | None]]
        if message.record is not None:
            # A replayed record: exactly as it first came.
            value, key = message.record.value, message.record.key
            headers = list(message.record.headers)
        else:
            value = (
                message.raw
                if message.raw is not None
                else (message.body_text or serialiser.serialise(message.body)).encode()
            )
            key = None if message.conversation_id is None else message.conversation_id.encode()
            headers = [("content-type", CONTENT_TYPE)]
            if message.message_type:
                headers.append((MESSAGE_TYPE_HEADER, message.message_type))
        size = (
            len(value or b"")
            + len(key or b"")
            + sum(len(name.encode()) + len(_as_bytes(text)) for name, text in headers)
        )
        limit = self.kafka.max_message_bytes
        if size > limit:
            raise MessageTooLargeError(
                f"the event is {size} bytes as a Kafka record, over the limit of {limit} "
                "([message_broker.kafka] max_message_bytes)",
                setting="[message_broker.kafka] max_message_bytes",
            )
        return value, key, headers

    def send_batch(self, connection: Any, messages: Sequence[OutgoingMessage]) -> list[int]:
        """Produce ``messages`` in order and wait for every delivery report; returns their
        offsets. Raises `UnavailableError` when Kafka did not acknowledge them all within
        `[message_broker.kafka] connect_timeout_seconds` (the caller's transaction then rolls
        back, so nothing is counted as sent)."""
        return [record.offset for record in self.publish(messages)]

    def publish(self, messages: Sequence[OutgoingMessage]) -> list[Published]:
        """`send_batch` without a session: where each record landed (partition, offset).

        Raises `MessageTooLargeError` before producing anything when a record is over
        `max_message_bytes`; `RecordTooLargeError` when the cluster refused one as too large
        (its `max.message.bytes` lower than configured: the batch counts as not acknowledged,
        send the records one at a time to find which); `KafkaUnavailableError` otherwise."""
        if not messages:
            return []
        serialiser = Broker(self.settings)
        records = [self._encode(message, serialiser) for message in messages]
        producer = self.producer()
        destination = f"kafka:{self.kafka.topic}"
        landed: list[Published | None] = [None] * len(messages)
        failures: list[KafkaError] = []

        def delivered(index: int) -> Any:
            def report(error: KafkaError | None, record: Message) -> None:
                if error is not None:
                    failures.append(error)
                else:
                    landed[index] = Published(
                        destination, int(record.partition() or 0), int(record.offset() or 0)
                    )

            return report

        for index, (value, key, headers) in enumerate(records):
            try:
                producer.produce(
                    self.kafka.topic,
                    value=value,
                    key=key,
                    headers=headers,
                    on_delivery=delivered(index),
                )
            except KafkaException as exc:
                failures.append(exc.args[0])
                break
            producer.poll(0)
        # Flushed a second at a time, beating `watch` while the acknowledgements are late.
        started = time.monotonic()
        deadline = started + self.kafka.connect_timeout_seconds
        remaining = producer.flush(min(_WAIT_SLICE_SECONDS, self.kafka.connect_timeout_seconds))
        while remaining and not failures and time.monotonic() < deadline:
            self._still_waiting(started, f"{remaining} event(s) not acknowledged")
            remaining = producer.flush(min(_WAIT_SLICE_SECONDS, deadline - time.monotonic()))
        acknowledged = [record for record in landed if record is not None]
        if not remaining and not failures and len(acknowledged) == len(messages):
            return acknowledged
        # A producer that saw a record refused starts afresh (an idempotent producer's
        # sequence is broken by a refused batch).
        self._producer = None
        if any(error.code() in _NO_TOPIC for error in failures):
            raise KafkaUnknownTopicError(self.kafka)
        too_large = [error for error in failures if error.code() == KafkaError.MSG_SIZE_TOO_LARGE]
        if too_large:
            raise RecordTooLargeError(
                f"Kafka at {self.kafka.bootstrap_servers} refused a record of topic "
                f"{self.kafka.topic!r} as too large ({too_large[0].str()}): the cluster's or "
                "the topic's max.message.bytes is lower than [message_broker.kafka] "
                "max_message_bytes",
                setting="the Kafka topic's max.message.bytes",
            )
        raise KafkaUnavailableError(
            f"Kafka at {self.kafka.bootstrap_servers} did not acknowledge "
            f"{len(messages) - len(acknowledged)} of {len(messages)} event(s) on topic "
            f"{self.kafka.topic!r}" + (f": {failures[0].str()}" if failures else ""),
            waited_seconds=None if failures else round(time.monotonic() - started, 3),
        )

    # -- consuming ----------------------------------------------------------------------------

    def consumer(self) -> Consumer:
        if self._consumer is None:
            self.check_reachable()
            consumer = Consumer(
                {
                    **self._client_config(),
                    "group.id": self.kafka.consumer_group,
                    "session.timeout.ms": int(self.kafka.session_timeout_seconds * 1000),
                    "max.poll.interval.ms": int(
                        max(
                            self.kafka.max_poll_interval_seconds, self.kafka.session_timeout_seconds
                        )
                        * 1000
                    ),
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    # The outcome of each asynchronous offset commit (`settled`), served by
                    # the consumer's next poll.
                    "on_commit": self._commit_done,
                }
            )
            consumer.subscribe(
                [self.kafka.topic], on_assign=self._assigned, on_revoke=self._revoked
            )
            self._consumer = consumer
        return self._consumer

    def listen(self, connection: Connection) -> None:
        """Join the consumer group (once per transport) and wait, a minute at most, until it
        assigned this worker its partitions (records fetched meanwhile are buffered)."""
        consumer = self.consumer()
        started = time.monotonic()
        while not consumer.assignment() and time.monotonic() - started < _RECEIVE_WAIT_SECONDS:
            self._fetch(1, _FETCH_SLICE_SECONDS)

    def hold(self, seconds: float, stop: threading.Event) -> None:
        """The sync pause: pause fetching of every assigned partition and keep polling for
        ``seconds`` (or until ``stop``), so the group keeps this member and its partitions
        (a consumer that stops polling leaves after `max_poll_interval_seconds`, and its
        return would rebalance the group). Records fetched before the pause stay buffered;
        partitions assigned meanwhile are paused too. `receive` and `wait` resume."""
        consumer = self.consumer()
        self._held = True
        deadline = time.monotonic() + seconds
        while True:
            assignment = consumer.assignment()
            if assignment:
                consumer.pause(assignment)
            self._fetch(1, min(_POLL_SLICE_SECONDS, max(0.0, deadline - time.monotonic())))
            if stop.is_set() or time.monotonic() >= deadline:
                return

    def _resume(self) -> None:
        if self._held and self._consumer is not None:
            assignment = self._consumer.assignment()
            if assignment:
                self._consumer.resume(assignment)
            self._held = False

    def wait(self, connection: Connection, seconds: float, stop: threading.Event) -> bool:
        """Poll Kafka until a record arrives, ``seconds`` pass or ``stop`` is set."""
        self._resume()
        deadline = time.monotonic() + seconds
        while not stop.is_set() and time.monotonic() < deadline:
            if self._fetch(1, _POLL_SLICE_SECONDS) or self._claimable():
                return True
        return True

    def receive(self, connection: Connection, max_messages: int) -> list[ReceivedMessage]:
        """Claim up to ``max_messages`` conversation heads. With nothing claimable buffered it
        fetches until records come or the group's partitions are caught up (what "nothing
        available now" means for a log), a minute at most."""
        self._resume()
        if not self._fetch(max_messages, 0.0) and not self._claimable():
            # Records behind the committed offsets, or a group still joining, are available
            # now even when a fetch brings nothing; a cluster that does not answer the
            # caught-up check raises instead. Caught up is asked before waiting: a drain's
            # last receive then ends at once instead of after a fetch's wait.
            # Past connect_timeout_seconds the wait beats `watch` (a cluster that went away
            # leaves the cached ends ahead of what can be fetched).
            started = time.monotonic()
            beaten = started + self.kafka.connect_timeout_seconds
            while not self._caught_up() and not self._fetch(max_messages, _FETCH_SLICE_SECONDS):
                now = time.monotonic()
                if now - started >= _RECEIVE_WAIT_SECONDS:
                    break
                if now >= beaten:
                    self._still_waiting(started, "records behind the group's offsets")
                    beaten = now + _WAIT_SLICE_SECONDS
        now = time.monotonic()
        received: list[ReceivedMessage] = []
        with self._lock:
            ahead: set[tuple[int, str]] = set()
            for record in self._records.values():
                key = record.message.conversation_id
                conversation = None if key is None else (record.partition, key)
                is_head = conversation is None or conversation not in ahead
                if conversation is not None:
                    ahead.add(conversation)
                if not is_head or record.claimed or record.available_at > now:
                    continue
                if len(received) == max_messages:
                    break
                record.message = replace(record.message, attempts=record.message.attempts + 1)
                record.claimed = True
                record.staged = None
                received.append(record.message)
        return received

    def complete(self, connection: Connection, messages: Sequence[ReceivedMessage]) -> int:
        return sum(self._stage(message, "done") for message in messages)

    def delay(self, connection: Connection, message: ReceivedMessage, seconds: float) -> None:
        self._stage(message, "delayed", max(0.0, seconds))

    def abandon(
        self,
        connection: Connection,
        message: ReceivedMessage,
        error: BaseException | None = None,
        retry_after_seconds: float = 0.0,
    ) -> None:
        self._stage(message, "abandoned", retry_after_seconds)

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
        """Write the dead letter in the caller's transaction; the record is settled (its
        offset committable) once that transaction committed. Its metadata keeps the record
        exactly (`value_base64`, `value_null`, `key_base64`, `headers`), so a replay publishes
        the same bytes; the body is the readable form. The same record delivered again (its
        offset was not committed) is not dead-lettered twice: None then, nothing written
        (docs/messaging.md)."""
        record = self._record(message)
        if record is None:
            return None
        if isinstance(message.body, str):
            # Not storable JSON: readable as a JSON string (the exact bytes are kept below).
            text = json.dumps(storable_text(message.body))
        else:
            # Storable as `_body` read it; made so all the same, so a dead letter is never
            # refused by jsonb (a refused one would fail its batch on every attempt).
            text = exact_dumps(storable_json(message.body))
        letter = dead_letter_unsent(
            connection,
            Broker(self.settings),
            OutgoingMessage(None, message.conversation_id, message.message_type),
            body_text=text,
            reason=reason,
            failure=failure or Failure(None, None, None),
            metadata={
                "transport": "kafka",
                "topic": self.kafka.topic,
                "partition": str(record.partition),
                "offset": str(record.offset),
                "timestamp_ms": str(record.timestamp_ms),
                **record.exact.metadata(),
                **(metadata or {}),
            },
            attempts=message.attempts if attempts is None else attempts,
        )
        self._stage(message, "done")
        return letter

    def settled(self, messages: Sequence[ReceivedMessage]) -> None:
        """Apply what the committed transaction settled, then commit each partition's offset
        up to its first record not yet settled: asynchronously (only partitions whose offset
        moved), or waiting for the cluster's answer when the last asynchronous commit failed,
        which raises `KafkaUnavailableError` if the cluster still does not take them."""
        ids = {message.message_id for message in messages}
        now = time.monotonic()
        with self._lock:
            for message_id in ids:
                record = self._records.get(message_id)
                if record is None or record.staged is None:
                    continue
                state, seconds = record.staged
                if state == "done":
                    del self._records[message_id]
                    continue
                attempts = record.message.attempts - (1 if state == "delayed" else 0)
                record.message = replace(record.message, attempts=max(attempts, 0))
                record.available_at = now + seconds
                record.claimed = False
                record.staged = None
            offsets = self._committable()
        if self._consumer is None:
            return
        if self._commit_failure is not None:
            # The last asynchronous commit failed: this one waits for the cluster's answer,
            # so a cluster that went away is counted by the loop's retry and breaker.
            self._commit(offsets)
            return
        advanced = [tp for tp in offsets if self._commit_sent.get(tp.partition) != tp.offset]
        if advanced:
            try:
                self._consumer.commit(offsets=advanced, asynchronous=True)
            except KafkaException as exc:
                raise KafkaUnavailableError(
                    f"Kafka at {self.kafka.bootstrap_servers} did not take the offsets: "
                    f"{exc.args[0]}"
                ) from exc
            self._commit_sent.update((tp.partition, tp.offset) for tp in advanced)

    def _commit(self, offsets: Sequence[TopicPartition]) -> None:
        """Commit ``offsets`` and wait for the cluster's answer (`on_commit`, served by
        fetching meanwhile: records that come are buffered), at most `connect_timeout_seconds`
        and beating `watch` each second. Raises `KafkaUnavailableError` when the cluster
        refused them or did not answer in time (librdkafka's own synchronous commit has no
        timeout: through an outage it waited until the cluster came back).

        Inside a rebalance callback (`_revoked`) it only sends them: a callback cannot fetch,
        and librdkafka waits for the commits in flight before the member rejoins."""
        if not offsets or self._consumer is None:
            return
        wanted = {tp.partition: tp.offset for tp in offsets}
        self._commit_failure = None
        try:
            self._consumer.commit(offsets=list(offsets), asynchronous=True)
        except KafkaException as exc:
            # The effects are committed; the records come again after a restart or a
            # rebalance and are recognised by their event ids (docs/messaging.md).
            raise KafkaUnavailableError(
                f"Kafka at {self.kafka.bootstrap_servers} did not take the offsets: {exc.args[0]}"
            ) from exc
        self._commit_sent.update(wanted)
        if self._rebalancing:
            return
        self._nothing_to_commit = False
        timeout = self.kafka.connect_timeout_seconds
        started = time.monotonic()
        beaten = started + _WAIT_SLICE_SECONDS
        while True:
            failure = self._commit_failure
            if failure is not None:
                raise KafkaUnavailableError(
                    f"Kafka at {self.kafka.bootstrap_servers} did not take the offsets: {failure}"
                )
            # Waiting on what is still ours (a rebalance meanwhile takes partitions away).
            if self._nothing_to_commit or all(
                self._commit_sent.get(partition) != offset
                or self._commit_confirmed.get(partition, -1) >= offset
                for partition, offset in wanted.items()
            ):
                return
            now = time.monotonic()
            if now - started >= timeout:
                # Kept for the next `settled`, which commits them again and waits.
                self._commit_failure = KafkaError(KafkaError._TIMED_OUT)
                raise KafkaUnavailableError(
                    f"Kafka at {self.kafka.bootstrap_servers} did not confirm the offsets "
                    f"within {timeout:g} s ([message_broker.kafka] connect_timeout_seconds)",
                    waited_seconds=round(now - started, 3),
                )
            if now >= beaten:
                self._still_waiting(started, "offsets not confirmed")
                beaten = now + _WAIT_SLICE_SECONDS
            self._fetch(1, min(_FETCH_SLICE_SECONDS, started + timeout - now))

    def _commit_unconfirmed(self, partitions: set[int] | None = None) -> None:
        """Commit, and wait for, each partition's committable offset (of ``partitions``, or
        all) that the cluster has not confirmed: sent asynchronously and not answered yet, or
        refused (a failed commit is no longer in flight), so the group sees them before this
        worker reads the group's lag, gives partitions away or leaves."""
        with self._lock:
            offsets = self._committable()
        self._commit(
            [
                tp
                for tp in offsets
                if self._commit_confirmed.get(tp.partition) != tp.offset
                and (partitions is None or tp.partition in partitions)
            ]
        )

    def _commit_done(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """`on_commit`: note what the cluster confirmed; a failed commit makes the next
        `settled` commit again and wait (the offsets come again with it)."""
        for tp in partitions:
            if error is None and tp.error is None:
                if tp.offset >= self._commit_confirmed.get(tp.partition, -1):
                    self._commit_confirmed[tp.partition] = tp.offset
            elif self._commit_sent.get(tp.partition) == tp.offset:
                del self._commit_sent[tp.partition]
        failure = (
            error if error is not None else next((tp.error for tp in partitions if tp.error), None)
        )
        if failure is not None and failure.code() == KafkaError._NO_OFFSET:
            # librdkafka sends nothing for offsets it knows are committed already (after a
            # rebalance it read them from the group): they have landed.
            self._nothing_to_commit = True
            return
        if failure is not None:
            log.warning("kafka_commit_failed", error=str(failure))
            self._commit_failure = failure

    def group_lag(self) -> list[PartitionLag]:
        """Per partition of the topic: the consumer group's committed offset, the end (high
        watermark) and the records between them; asked of the cluster, not cached. Raises
        `KafkaUnavailableError` when the cluster does not answer within
        `connect_timeout_seconds`, `KafkaUnknownTopicError` when it has no such topic."""
        if self._probe is None:
            self.check_reachable()
            # A client of the group that never subscribes: asking does not join the group
            # (which would make its members rebalance).
            self._probe = Consumer({**self._client_config(), "group.id": self.kafka.consumer_group})
        return _group_lag(self._probe, self._admin_client, self.kafka)

    def _admin_client(self, renew: bool) -> AdminClient:
        """`group_lag`'s admin client; a new one when ``renew`` (after an error: librdkafka's
        keeps the partitions' leader epochs of before a broker restart, and answers
        `FENCED_LEADER_EPOCH` ever after)."""
        if renew or self._admin is None:
            self._admin = AdminClient(self._client_config())
        return self._admin

    def drained(self) -> bool:
        """After a receive that claimed nothing: whether the group's committed offsets reached
        the end of every partition, apart from partitions of this consumer fetched to their
        end (what is left there is held back as delayed and comes again to the group later).

        Until then it waits a moment for the group (serving its rebalances: a dead member's
        partitions come to this consumer once its session timed out) and returns False.
        Raises `KafkaUnavailableError` naming the partitions when their lag did not change
        for two session timeouts (`[message_broker.kafka] session_timeout_seconds`): a live
        member holds them without consuming, and an operator must look."""
        consumer = self.consumer()
        # This worker's last offsets first (sent asynchronously by `settled`), so the group
        # it reads, and the other members waiting for it, see them.
        self._commit_unconfirmed()
        lags = self.group_lag()
        try:
            mine = consumer.assignment()
            positions = {tp.partition: tp.offset for tp in consumer.position(mine)} if mine else {}
        except KafkaException as exc:
            raise KafkaUnavailableError(
                f"Kafka at {self.kafka.bootstrap_servers} did not answer: {exc.args[0]}"
            ) from exc
        behind = [lag for lag in lags if lag.lag > 0 and positions.get(lag.partition, -1) < lag.end]
        if not behind:
            self._stall = None
            return True
        now = time.monotonic()
        mark = tuple((lag.partition, lag.committed, lag.end) for lag in behind)
        if self._stall is None or self._stall[0] != mark:
            self._stall = (mark, now)
        elif now - self._stall[1] >= 2 * self.kafka.session_timeout_seconds:
            owned = {tp.partition for tp in mine}
            raise KafkaUnavailableError(
                f"the consumer group {self.kafka.consumer_group!r} has not moved on topic "
                f"{self.kafka.topic!r} for {now - self._stall[1]:.0f} s: "
                + ", ".join(
                    f"partition {lag.partition} has {lag.lag} record(s) not committed"
                    + (" (this worker's)" if lag.partition in owned else " (another member's)")
                    for lag in behind
                )
                + "; a member holds them without consuming"
            )
        # Serves the group's rebalances meanwhile; short, as the drain ends as soon as the
        # other members' last offsets are in (a quarter second here was a quarter of a
        # 4,000-event drain of two workers, benchmarks/transports.py).
        self._fetch(1, _DRAIN_POLL_SECONDS)
        return False

    def released(self, messages: Sequence[ReceivedMessage]) -> None:
        """The batch's transaction did not commit: its settlements are void and the records
        come back (the attempt stays counted)."""
        ids = {message.message_id for message in messages}
        with self._lock:
            for record in self._records.values():
                if record.message.message_id in ids:
                    record.claimed = False
                    record.staged = None

    def close(self) -> None:
        if self._consumer is not None:
            self._commit_quietly(None)
            self._consumer.close()
            self._consumer = None
        if self._probe is not None:
            self._probe.close()
            self._probe = None
        self._admin = None
        if self._producer is not None:
            self._producer.flush(self.kafka.connect_timeout_seconds)
            self._producer = None
        with self._lock:
            self._records.clear()
            self._consumed.clear()

    def outside_reader(
        self, purpose: str, lagging: Sequence[PartitionLag], *, eof: bool = False
    ) -> Consumer:
        """A client outside the group (group id `<group>.<purpose>`, never committing, so the
        group does not rebalance) assigned to ``lagging``'s partitions from their committed
        offsets; the caller closes it."""
        reader = Consumer(
            {
                **self._client_config(),
                "group.id": f"{self.kafka.consumer_group}.{purpose}",
                "enable.auto.commit": False,
                # Partition EOF events: where a read to the end may stop.
                "enable.partition.eof": eof,
            }
        )
        reader.assign([TopicPartition(self.kafka.topic, p.partition, p.committed) for p in lagging])
        return reader

    def unsettled(
        self, connection: Connection, conversations: Collection[str] | None = None
    ) -> list[UnsettledMessage]:
        """The records between the consumer group's committed offset and the end of each
        partition (of ``conversations``' keys only when given), in offset order per partition
        (the `Transport` port). Read by a client outside the group (its own group id, never
        committing), so the group does not rebalance. Raises `KafkaUnavailableError` when the
        cluster does not give them within `connect_timeout_seconds`."""
        lagging = [lag for lag in self.group_lag() if lag.lag]
        if not lagging:
            return []
        kafka = self.kafka
        reader = self.outside_reader("unsettled", lagging, eof=True)
        wanted = None if conversations is None else set(conversations)
        found: list[UnsettledMessage] = []
        try:
            ends = {lag.partition: lag.end for lag in lagging}
            started = time.monotonic()
            while ends:
                if time.monotonic() - started > kafka.connect_timeout_seconds:
                    raise KafkaUnavailableError(
                        f"Kafka at {kafka.bootstrap_servers} did not give the records of topic "
                        f"{kafka.topic!r} behind the group's offsets within "
                        f"{kafka.connect_timeout_seconds:g} s",
                        waited_seconds=round(time.monotonic() - started, 3),
                    )
                for record in reader.consume(num_messages=500, timeout=_FETCH_SLICE_SECONDS):
                    partition = int(record.partition() or 0)
                    error = record.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            ends.pop(partition, None)
                        elif error.code() in _CLUSTER_AWAY:
                            raise KafkaUnavailableError(
                                f"Kafka at {kafka.bootstrap_servers} went away: {error}"
                            )
                        continue
                    offset = int(record.offset() or 0)
                    if partition not in ends or offset >= ends[partition]:
                        continue
                    if offset + 1 >= ends[partition]:
                        del ends[partition]
                    key = record.key()
                    conversation = None if key is None else _text(bytes(key))
                    if wanted is not None and conversation not in wanted:
                        continue
                    raw = record.value() or b""
                    found.append(
                        UnsettledMessage(
                            conversation,
                            _body(raw if isinstance(raw, bytes) else str(raw).encode()),
                            datetime.fromtimestamp(record.timestamp()[1] / 1000, UTC),
                        )
                    )
        finally:
            reader.close()
        return found

    # -- internals ----------------------------------------------------------------------------

    def _fetch(self, max_messages: int, timeout: float) -> int:
        """Move up to ``max_messages`` records from Kafka into the buffer; how many came."""
        consumer = self.consumer()
        fetched = consumer.consume(num_messages=max(1, max_messages), timeout=timeout)
        added = 0
        with self._lock:
            for record in fetched:
                error = record.error()
                if error is not None:
                    if error.code() in _CLUSTER_AWAY:
                        raise KafkaUnavailableError(
                            f"Kafka at {self.kafka.bootstrap_servers} went away: {error}"
                        )
                    if error.code() in _NO_TOPIC:
                        raise KafkaUnknownTopicError(self.kafka)
                    if error.fatal():
                        raise KafkaException(error)
                    log.warning("kafka_consume_error", error=str(error))
                    continue
                buffered = self._to_record(record)
                self._records[buffered.message.message_id] = buffered
                partition = int(record.partition() or 0)
                self._consumed[partition] = int(record.offset() or 0) + 1
                added += 1
        return added

    def _to_record(self, record: Message) -> _Record:
        exact = _exact(record)
        headers = dict(exact.headers)
        key = exact.key
        timestamp = record.timestamp()[1]
        message = ReceivedMessage(
            message_id=self._next_id,
            queue_name=self.kafka.topic,
            conversation_id=None if key is None else _text(key),
            message_type=_text(headers.get(MESSAGE_TYPE_HEADER)) or self.settings.message_type_name,
            body=_body(exact.value or b""),
            enqueued_at=datetime.fromtimestamp(timestamp / 1000, UTC),
            attempts=0,
        )
        self._next_id += 1
        return _Record(
            message,
            int(record.partition() or 0),
            int(record.offset() or 0),
            exact=exact,
            timestamp_ms=timestamp,
        )

    def _committable(self) -> list[TopicPartition]:
        first_unsettled: dict[int, int] = {}
        for record in self._records.values():
            first_unsettled.setdefault(record.partition, record.offset)
        return [
            TopicPartition(self.kafka.topic, partition, first_unsettled.get(partition, consumed))
            for partition, consumed in self._consumed.items()
        ]

    def _stage(self, message: ReceivedMessage, state: State, seconds: float = 0.0) -> bool:
        with self._lock:
            record = self._find(message)
            if record is None:
                return False
            record.staged = (state, seconds)
            return True

    def _record(self, message: ReceivedMessage) -> _Record | None:
        with self._lock:
            return self._find(message)

    def _find(self, message: ReceivedMessage) -> _Record | None:
        return self._records.get(message.message_id)

    def _caught_up(self) -> bool:
        """Whether every assigned partition has been fetched up to its high watermark (True
        while the group assigned none: `drained` then waits for the group)."""
        consumer = self.consumer()
        assignment = consumer.assignment()
        if not assignment:
            return True
        timeout = self.kafka.connect_timeout_seconds
        started = time.monotonic()
        try:
            for position in consumer.position(assignment):
                # The high watermark the last fetch brought (no round trip); asked of the
                # broker only while unknown. A record produced since that fetch is then seen
                # by the next receive.
                low, high = consumer.get_watermark_offsets(position, cached=True)
                if high < 0:
                    low, high = consumer.get_watermark_offsets(
                        position, timeout=timeout, cached=False
                    )
                offset = position.offset
                if offset < 0:  # nothing fetched yet: the committed offset, else the start
                    [committed] = consumer.committed([position], timeout=timeout)
                    offset = committed.offset if committed.offset >= 0 else low
                if offset < high:
                    return False
        except KafkaException as exc:
            raise KafkaUnavailableError(
                f"Kafka at {self.kafka.bootstrap_servers} did not answer: {exc.args[0]}",
                waited_seconds=_waited(started, timeout),
            ) from exc
        return True

    def _claimable(self) -> bool:
        now = time.monotonic()
        with self._lock:
            return any(not r.claimed and r.available_at <= now for r in self._records.values())

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info(
            "kafka_partitions_assigned",
            topic=self.kafka.topic,
            group=self.kafka.consumer_group,
            partitions=sorted(tp.partition for tp in partitions),
        )

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Another worker takes these partitions over from their committed offsets: commit
        what this one settled there (sent, not waited for: see `_commit`), then forget their
        buffered records (not yet settled, so not yet committed)."""
        lost = {tp.partition for tp in partitions}
        log.info(
            "kafka_partitions_revoked",
            topic=self.kafka.topic,
            group=self.kafka.consumer_group,
            partitions=sorted(lost),
        )
        self._rebalancing = True
        try:
            self._commit_quietly(lost)
        finally:
            self._rebalancing = False
        with self._lock:
            self._records = {i: r for i, r in self._records.items() if r.partition not in lost}
            for partition in lost:
                self._consumed.pop(partition, None)
                self._commit_sent.pop(partition, None)
                self._commit_confirmed.pop(partition, None)

    def _commit_quietly(self, partitions: set[int] | None) -> None:
        """`_commit_unconfirmed` where no caller can act on a failure (a rebalance, `close`):
        the records not confirmed come again to whoever owns them next, and their effects are
        recognised by event id (docs/messaging.md)."""
        try:
            self._commit_unconfirmed(partitions)
        except KafkaUnavailableError as exc:
            log.warning("kafka_commit_failed", error=str(exc))


@dataclass(frozen=True)
class PartitionLag:
    """One partition of the topic as the consumer group stands: `committed` (the next record
    the group will handle; the start of the log when it committed none), `end` (the high
    watermark) and `lag`, the records between them."""

    partition: int
    committed: int
    end: int

    @property
    def lag(self) -> int:
        return max(0, self.end - self.committed)


@dataclass(frozen=True)
class GroupBacklog:
    """The sync workers' consumer group on its topic: each partition's lag, and the age of the
    oldest record not committed (seconds since its Kafka timestamp; None when none lags)."""

    group: str
    topic: str
    partitions: list[PartitionLag]
    oldest_age_seconds: float | None

    @property
    def lag(self) -> int:
        return sum(partition.lag for partition in self.partitions)


def group_backlog(settings: MessageBrokerSettings) -> GroupBacklog:
    """What `/health/ready` and `status` show of the Kafka transport. Reads without joining
    the group or committing: the committed offsets and ends, then the first record not
    committed of each lagging partition (its timestamp). Raises `KafkaUnavailableError`
    naming the bootstrap servers when the cluster does not answer."""
    transport = KafkaTransport(settings)
    kafka = settings.kafka
    try:
        lags = transport.group_lag()
    finally:
        transport.close()
    lagging = [lag for lag in lags if lag.lag]
    oldest: float | None = None
    if lagging:
        # A client outside the group (its own id, never committing) reads the oldest records.
        reader = transport.outside_reader("backlog", lagging)
        try:
            stamps: dict[int, int] = {}
            deadline = time.monotonic() + kafka.connect_timeout_seconds
            while len(stamps) < len(lagging) and time.monotonic() < deadline:
                for record in reader.consume(
                    num_messages=len(lagging), timeout=_POLL_SLICE_SECONDS
                ):
                    if record.error() is None:
                        stamps.setdefault(int(record.partition() or 0), record.timestamp()[1])
        finally:
            reader.close()
        if stamps:
            oldest = round(max(0.0, time.time() - min(stamps.values()) / 1000), 3)
    return GroupBacklog(kafka.consumer_group, kafka.topic, lags, oldest)


def _group_lag(
    client: Consumer, admin_client: Callable[[bool], AdminClient], kafka: KafkaSettings
) -> list[PartitionLag]:
    """Two round trips after the topic's metadata, whatever the partition count: the group's
    committed offsets (``client``, a member of the group that never subscribes) while every
    partition's start and end are asked at once (``admin_client(renew)``: a new admin client
    after an error). Raises `KafkaUnknownTopicError` for a topic the cluster does not have."""
    timeout = kafka.connect_timeout_seconds
    deadline = time.monotonic() + timeout
    renew = False
    while True:
        try:
            admin = admin_client(renew)
            metadata = client.list_topics(timeout=timeout).topics.get(kafka.topic)
            if metadata is None or (
                metadata.error is not None and metadata.error.code() in _NO_TOPIC
            ):
                raise KafkaUnknownTopicError(kafka)
            if metadata.error is not None or not metadata.partitions:
                return []
            partitions = [TopicPartition(kafka.topic, p) for p in sorted(metadata.partitions)]
            starts = admin.list_offsets(dict.fromkeys(partitions, _START), request_timeout=timeout)
            ends = admin.list_offsets(dict.fromkeys(partitions, _END), request_timeout=timeout)
            # The consumer's own ask, not the admin client's: librdkafka's admin client did
            # not find the group's coordinator again after the broker restarted.
            committed = client.committed(partitions, timeout=timeout)
            low = {tp.partition: future.result().offset for tp, future in starts.items()}
            high = {tp.partition: future.result().offset for tp, future in ends.items()}
            return [
                PartitionLag(tp.partition, max(tp.offset, low[tp.partition]), high[tp.partition])
                for tp in committed
            ]
        except KafkaException as exc:
            # A group's coordinator moving or loading (`NOT_COORDINATOR` for a new group) is
            # retriable: asked again until the timeout.
            renew = True
            if (
                exc.args[0].retriable() or exc.args[0].code() in _STALE_LEADER
            ) and time.monotonic() < deadline:
                time.sleep(_FETCH_SLICE_SECONDS)
                continue
            if exc.args[0].code() in _NO_TOPIC:
                raise KafkaUnknownTopicError(kafka) from exc
            raise KafkaUnavailableError(
                f"Kafka at {kafka.bootstrap_servers} did not answer: {exc.args[0]}",
                waited_seconds=_waited(deadline - timeout, timeout),
            ) from exc


# What librdkafka says when the client's security protocol is not the listener's: TLS
# towards a plain listener, SASL towards a listener without it, plain towards a TLS or SASL
# listener (the broker drops the connection at the first request).
_MISMATCH_SIGNS = (
    "SSL handshake failed",
    "SASL",
    "in state APIVERSION_QUERY",
    "connecting to a PLAINTEXT broker listener",
)


def _protocol_mismatch(protocol: str, errors: Sequence[KafkaError]) -> str:
    """The likely cause to add to an unreachable cluster's error, when one of the client's
    errors (``errors``, its `error_cb`) shows a failed handshake; else ""."""
    for error in errors:
        detail = error.str()
        if error.code() in (KafkaError._SSL, KafkaError._AUTHENTICATION) or any(
            sign in detail for sign in _MISMATCH_SIGNS
        ):
            return (
                f"; likely a [message_broker.kafka] security_protocol mismatch ({protocol} "
                f"is not what the listener speaks: {detail})"
            )
    return ""


def _waited(started: float, timeout: float) -> float | None:
    """Seconds since ``started`` when a call waited its whole ``timeout`` (the client retried
    the cluster all along: `KafkaUnavailableError.waited_seconds`), else None."""
    elapsed = time.monotonic() - started
    return round(elapsed, 3) if elapsed >= timeout else None


def _body(raw: bytes) -> Any:
    """A record's value as the CloudEvent it carries (numbers exact), when it is JSON that
    PostgreSQL stores as it is (`storable.loads_storable`); otherwise an `UnreadableBody`
    naming why (not UTF-8, not JSON, nested too deep, NaN or infinity, NUL, a lone
    surrogate), which the handler dead-letters as a malformed CloudEvent with the record's
    exact bytes."""
    try:
        return loads_storable(raw)
    except NotStorableError as exc:
        return UnreadableBody(storable_text(raw.decode(errors="replace")), str(exc))


def _exact(record: Message) -> ExactRecord:
    """``record``'s value, key and headers as bytes, as the cluster holds them."""
    value, key, headers = record.value(), record.key(), record.headers() or []
    # A consumed record's headers are a list of pairs (names may repeat); the stub also
    # allows a producer's dict.
    pairs = list(headers.items()) if isinstance(headers, dict) else headers
    return ExactRecord(
        None if value is None else _as_bytes(value),
        None if key is None else _as_bytes(key),
        tuple((name, None if text is None else _as_bytes(text)) for name, text in pairs),
    )


def _as_bytes(value: str | bytes | None) -> bytes:
    if value is None:
        return b""
    return value if isinstance(value, bytes) else value.encode()


def _text(value: str | bytes | None) -> str:
    """A key or header as storable text (invalid UTF-8, NUL and lone surrogates replaced as
    `storable.storable_text` says)."""
    if value is None:
        return ""
    return storable_text(value.decode(errors="replace") if isinstance(value, bytes) else value)
