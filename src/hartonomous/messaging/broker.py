"""The in-database broker (docs/messaging.md): send, receive, complete, abandon, delay, dead-letter.

A message is claimed by one receive (`FOR UPDATE SKIP LOCKED`), which persists the delivery
attempt and records the consumer's backend pid. The claim ends when the message is completed
(deleted), abandoned, delayed or dead-lettered. A claim whose session is gone (the worker died)
or whose lease lapsed is an *orphan*: the next receive takes it back, alone, so a message that
kills its worker cannot drag a whole batch towards the poison limit with it.

Only the head of a conversation (its lowest message id) can be claimed, so one conversation's
messages are handled strictly in order while different conversations run in parallel.

Each receive scans from the consumer's low-water mark (messaging/low_water.py), so the rows
completed before it cost nothing even while an old snapshot keeps them from being vacuumed.
"""

from __future__ import annotations

import base64
import json
import threading
import traceback
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
import sqlalchemy
from psycopg.rows import dict_row
from psycopg.types.json import set_json_loads

from hartonomous.config.sections import MessageBrokerSettings
from hartonomous.errors import OperationFailedError
from hartonomous.json_types import JsonValue, exact_dumps
from hartonomous.messaging.envelope import loads_stored
from hartonomous.messaging.low_water import LowWaterMark
from hartonomous.messaging.notify import wait_for_notify
from hartonomous.storable import storable_json, storable_text

Connection = psycopg.Connection[Any]
POISON_REASON = "Exceeded maximum delivery attempts of {max_attempts}"
ORPHAN_ERROR = "the consumer stopped (or its claim lapsed) before finishing attempt {attempt}"


class MessageTooLargeError(OperationFailedError, ValueError):
    """A message is over its transport's size limit: longer than `[message_broker]
    max_message_characters`, or (Kafka) over `[message_broker.kafka] max_message_bytes` or the
    Kafka broker's own limit. `setting` names the limit (the CES consumer's dead-letter reason
    says it)."""

    def __init__(
        self, message: str, *, setting: str = "[message_broker] max_message_characters"
    ) -> None:
        super().__init__(message)
        self.setting = setting


@dataclass(frozen=True)
class ExactRecord:
    """A log's record exactly as it came (a Kafka dead letter keeps it, docs/messaging.md):
    ``value`` (None: a tombstone), ``key`` (None: no key) and ``headers`` (name, value bytes or
    None) in their order; a replay publishes exactly these."""

    value: bytes | None
    key: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()

    def metadata(self) -> dict[str, JsonValue]:
        """How a dead letter's metadata keeps it: `value_base64` (absent for a tombstone,
        which has `value_null` "true"), `key_base64` (absent without a key) and `headers`, a
        list of [name, value in base64 or null] in the record's order."""
        kept: dict[str, JsonValue] = {
            "headers": [[name, _b64(text)] for name, text in self.headers]
        }
        if self.value is None:
            kept["value_null"] = "true"
        else:
            kept["value_base64"] = _b64(self.value)
        if self.key is not None:
            kept["key_base64"] = _b64(self.key)
        return kept

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any] | None) -> ExactRecord | None:
        """The record a Kafka dead letter's ``metadata`` keeps (`metadata`); None for any
        other dead letter, or one written before the record was kept (no `headers`)."""
        if not metadata or metadata.get("transport") != "kafka":
            return None
        headers = metadata.get("headers")
        if not isinstance(headers, list):
            return None
        value, key = metadata.get("value_base64"), metadata.get("key_base64")
        return cls(
            None if value is None else base64.b64decode(value),
            None if key is None else base64.b64decode(key),
            tuple(
                (str(name), None if text is None else base64.b64decode(text))
                for name, text in headers
            ),
        )


def _b64(value: bytes | None) -> str | None:
    return None if value is None else base64.b64encode(value).decode()


@dataclass(frozen=True)
class OutgoingMessage:
    body: Any
    conversation_id: str | None = None
    message_type: str | None = None
    delay_seconds: float = 0.0
    # The body's JSON text when the sender already checked it with `Broker.serialise`.
    body_text: str | None = None
    # A log's record value exactly as it first came (a replayed record that was not JSON:
    # its bytes, not a JSON text of them); only a transport outside the database sends it.
    raw: bytes | None = None
    # The whole record as it first came (value, key, headers): sent as it is, overriding the
    # body, conversation and type; only a transport outside the database sends it.
    record: ExactRecord | None = None


@dataclass(frozen=True)
class ReceivedMessage:
    message_id: int
    queue_name: str
    conversation_id: str | None
    message_type: str
    body: Any
    enqueued_at: datetime
    attempts: int
    replayed_from: int | None = None
    last_error: str | None = None


@dataclass(frozen=True)
class UnsettledMessage:
    """A message sent and not yet settled: its conversation, its body (the parsed CloudEvent;
    the text when it is not JSON) and when it was sent (the broker's `enqueued_at`, Kafka's
    record timestamp)."""

    conversation_id: str | None
    body: Any
    enqueued_at: datetime


@dataclass(frozen=True)
class Failure:
    """What went wrong with one delivery, as stored in a dead letter."""

    exception_type: str | None
    message: str | None
    traceback: str | None

    @classmethod
    def of(cls, exc: BaseException) -> Failure:
        kind = type(exc)
        return cls(
            exception_type=f"{kind.__module__}.{kind.__qualname__}",
            message=str(exc),
            traceback="".join(traceback.format_exception(exc)),
        )


def psycopg_connection(connection: Connection | sqlalchemy.Connection) -> Connection:
    """The driver connection under a SQLAlchemy connection (so sends join its transaction)."""
    if isinstance(connection, sqlalchemy.Connection):
        driver = connection.connection.driver_connection
        assert isinstance(driver, psycopg.Connection)
        return driver
    return connection


# One statement, one round trip: take back the lowest orphan if there is one, otherwise claim up
# to `limit` conversation heads. An orphan that already used every allowed attempt is not
# claimed again but returned with `exhausted` so that the caller dead-letters it. Every scan
# starts at the consumer's low-water mark and looks the stragglers below it up by id
# (messaging/low_water.py): nothing else below the mark exists, so the head-of-conversation
# checks look no lower either. The UPDATE finds its rows through the primary key
# (`= ANY(ARRAY(...))`): a join on the CTE lets the planner hash-join against a scan of the
# whole queue when its statistics lag behind.
_HEAD = """
      AND NOT EXISTS (
          SELECT FROM broker_messages earlier
          WHERE earlier.queue_name = m.queue_name
            AND earlier.conversation_id = m.conversation_id
            AND earlier.message_id < m.message_id
            AND earlier.message_id >= %(mark)s)
      AND NOT EXISTS (
          SELECT FROM listed earlier
          WHERE earlier.conversation_id = m.conversation_id
            AND earlier.message_id < m.message_id)"""
_RECEIVE = f"""
WITH listed AS MATERIALIZED (
    SELECT message_id, conversation_id FROM broker_messages
    WHERE message_id = ANY(%(stragglers)s) AND queue_name = %(queue)s
), orphan AS (
    SELECT m.message_id, m.attempts >= %(max_attempts)s AS exhausted
    FROM broker_messages m
    WHERE m.message_id = ANY(ARRAY(
            SELECT message_id FROM listed
            UNION ALL
            SELECT c.message_id FROM broker_messages c
            WHERE c.queue_name = %(queue)s AND c.locked_by IS NOT NULL
              AND c.message_id >= %(mark)s))
      AND m.queue_name = %(queue)s
      AND m.locked_by IS NOT NULL
      AND (m.locked_until < now()
           OR m.locked_by NOT IN (SELECT pid FROM pg_stat_activity WHERE pid IS NOT NULL)){_HEAD}
    ORDER BY m.message_id
    LIMIT 1
    FOR UPDATE OF m SKIP LOCKED
), clean_listed AS (
    SELECT m.message_id FROM broker_messages m
    WHERE NOT EXISTS (SELECT FROM orphan WHERE NOT orphan.exhausted)
      AND m.message_id = ANY(ARRAY(SELECT message_id FROM listed))
      AND m.queue_name = %(queue)s
      AND m.locked_by IS NULL
      AND m.available_at <= now(){_HEAD}
    ORDER BY m.message_id
    LIMIT %(limit)s
    FOR UPDATE OF m SKIP LOCKED
), clean AS (
    SELECT m.message_id FROM broker_messages m
    WHERE NOT EXISTS (SELECT FROM orphan WHERE NOT orphan.exhausted)
      AND m.queue_name = %(queue)s
      AND m.locked_by IS NULL
      AND m.message_id >= %(mark)s
      AND m.available_at <= now(){_HEAD}
    ORDER BY m.message_id
    LIMIT (SELECT %(limit)s - count(*) FROM clean_listed)
    FOR UPDATE OF m SKIP LOCKED
), claimed AS (
    UPDATE broker_messages m
    SET attempts = m.attempts + 1,
        locked_by = pg_backend_pid(),
        locked_until = now() + make_interval(secs => %(lease)s),
        received_at = now()
    WHERE m.message_id = ANY(ARRAY(
        SELECT message_id FROM orphan WHERE NOT exhausted
        UNION ALL
        SELECT message_id FROM clean_listed
        UNION ALL
        SELECT message_id FROM clean))
    RETURNING m.message_id, m.queue_name, m.conversation_id, m.message_type, m.body,
              m.enqueued_at, m.attempts, m.replayed_from, m.last_error
)
SELECT claimed.*, false AS exhausted FROM claimed
UNION ALL
SELECT m.message_id, m.queue_name, m.conversation_id, m.message_type, m.body, m.enqueued_at,
       m.attempts, m.replayed_from, m.last_error, true
FROM broker_messages m JOIN orphan o ON o.message_id = m.message_id AND o.exhausted
"""

# Deletes the handled messages and counts them for `broker status` in the same statement.
_COMPLETE = """
WITH done AS (
    DELETE FROM broker_messages
    WHERE message_id = ANY(%(ids)s) AND locked_by IS NOT NULL
    RETURNING message_id
), counted AS (
    INSERT INTO broker_throughput AS t (queue_name, bucket, worker_pid, completed)
    SELECT %(queue)s, date_trunc('second', now()), pg_backend_pid(), n
    FROM (SELECT count(*)::int AS n FROM done) AS d
    WHERE n > 0
    ON CONFLICT (queue_name, bucket, worker_pid)
    DO UPDATE SET completed = t.completed + excluded.completed
)
SELECT count(*) FROM done
"""

_DEAD_LETTER = """
WITH moved AS (
    DELETE FROM broker_messages WHERE message_id = %(message_id)s AND locked_by IS NOT NULL
    RETURNING message_id, queue_name, conversation_id, message_type, body, enqueued_at
)
INSERT INTO message_dead_letters (
    message_id, queue_name, conversation_id, message_type, body, enqueued_at, attempts,
    reason, exception_type, exception_message, exception_traceback, metadata)
SELECT message_id, queue_name, conversation_id, message_type, body, enqueued_at, %(attempts)s,
       %(reason)s, %(exception_type)s, %(exception_message)s, %(exception_traceback)s,
       %(metadata)s::jsonb
FROM moved
RETURNING dead_letter_id
"""


# The queue's messages, of some conversations only when %(conversations)s is not NULL.
_UNSETTLED = """
SELECT conversation_id, body, enqueued_at FROM broker_messages
WHERE queue_name = %(queue)s
  AND (%(conversations)s::text[] IS NULL OR conversation_id = ANY(%(conversations)s::text[]))
ORDER BY message_id
"""


@dataclass
class Broker:
    """One logical queue (`[message_broker] queue_name`) in `broker_messages`."""

    settings: MessageBrokerSettings
    queue_name: str = ""
    # How long a claim lasts before another consumer may take the message back.
    lease_seconds: float = 0.0
    max_attempts: int = field(init=False)
    # Where this consumer's receives start (messaging/low_water.py).
    low_water: LowWaterMark = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.queue_name = self.queue_name or self.settings.queue_name
        self.lease_seconds = self.lease_seconds or float(
            self.settings.conversation_lifetime_seconds
        )
        self.max_attempts = self.settings.resilience.poison_message_max_attempts
        self.low_water = LowWaterMark(self.queue_name)

    @property
    def channel(self) -> str:
        """The LISTEN/NOTIFY channel that wakes idle consumers of this queue."""
        return f"hartonomous_broker_{self.queue_name}"[:63]

    # -- sending (always inside the caller's transaction) -------------------------------------

    def send(
        self,
        connection: Connection | sqlalchemy.Connection,
        body: Any,
        *,
        conversation_id: str | None = None,
        message_type: str | None = None,
        delay_seconds: float = 0.0,
    ) -> int:
        message = OutgoingMessage(body, conversation_id, message_type, delay_seconds)
        return self.send_batch(connection, [message])[0]

    def send_batch(
        self, connection: Connection | sqlalchemy.Connection, messages: Sequence[OutgoingMessage]
    ) -> list[int]:
        """Enqueue all messages in one statement; visible to consumers when the caller commits.

        The arrays travel in binary: the text form of an array escapes every quote of every
        JSON body, which cost more than the whole INSERT.
        """
        if not messages:
            return []
        bodies = [message.body_text or self.serialise(message.body) for message in messages]
        conn = psycopg_connection(connection)
        rows = conn.execute(
            """
            WITH ins AS (
                INSERT INTO broker_messages
                    (queue_name, conversation_id, message_type, body, available_at)
                SELECT %(queue)s, c, t, b::jsonb, now() + make_interval(secs => d)
                FROM unnest(%(conversations)b::text[], %(types)b::text[], %(bodies)b::text[],
                            %(delays)b::float8[]) WITH ORDINALITY AS u(c, t, b, d, n)
                ORDER BY n
                RETURNING message_id
            ), wake AS (SELECT pg_notify(%(channel)s, ''))
            SELECT ins.message_id FROM ins CROSS JOIN wake ORDER BY ins.message_id
            """,
            {
                "queue": self.queue_name,
                "conversations": [m.conversation_id for m in messages],
                "types": [m.message_type or self.settings.message_type_name for m in messages],
                "bodies": bodies,
                "delays": [max(0.0, m.delay_seconds) for m in messages],
                "channel": self.channel,
            },
        ).fetchall()
        return [int(row[0]) for row in rows]

    def serialise(self, body: Any) -> str:
        """The body's JSON text (`Decimal`s verbatim), within `max_message_characters`.

        Raises `MessageTooLargeError` (naming the size and the setting) or `ValueError` (not
        JSON data, or a NaN / infinite number, which JSON cannot carry).
        """
        try:
            text = exact_dumps(body)
        except ValueError as exc:
            raise ValueError(f"message body is not JSON-serialisable: {exc}") from None
        limit = self.settings.max_message_characters
        if len(text) > limit:
            raise MessageTooLargeError(
                f"message body is {len(text)} characters, over the limit of {limit} "
                "([message_broker] max_message_characters)"
            )
        return text

    # -- receiving and settling (the `Transport` port, messaging/transport.py) ----------------

    def listen(self, connection: Connection) -> None:
        """LISTEN on `channel`, so that `wait` ends as soon as something is sent."""
        connection.execute(f'LISTEN "{self.channel}"')

    def wait(self, connection: Connection, seconds: float, stop: threading.Event) -> bool:
        """Idle until a send's NOTIFY, ``seconds`` pass or ``stop`` is set; False when the
        session failed."""
        return wait_for_notify(connection, seconds, stop)

    def watch(self, waiting: Callable[[str], None] | None) -> None:
        """Nothing to watch: the broker waits only on its callers' sessions."""

    def hold(self, seconds: float, stop: threading.Event) -> None:
        """Wait: the queue lives in the database, nothing to keep alive."""
        stop.wait(seconds)

    def settled(self, messages: Sequence[ReceivedMessage]) -> None:
        """Nothing to do: settling wrote in the committed transaction itself."""

    def drained(self) -> bool:
        """Yes: a receive that claimed nothing means nothing is available now."""
        return True

    def released(self, messages: Sequence[ReceivedMessage]) -> None:
        """Nothing to do: the rollback undid the settlements; the claims end with the session
        (orphans) or the lease."""

    def close(self) -> None:
        """Nothing held: the broker works on its callers' sessions."""

    def unsettled(
        self, connection: Connection, conversations: Collection[str] | None = None
    ) -> list[UnsettledMessage]:
        """The queue's messages (waiting, claimed or delayed), of ``conversations`` only when
        given, in send order (the `Transport` port)."""
        with connection.cursor() as cursor:
            set_json_loads(loads_stored, cursor)
            cursor.execute(
                _UNSETTLED,
                {
                    "queue": self.queue_name,
                    "conversations": None if conversations is None else list(conversations),
                },
            )
            return [UnsettledMessage(str(c) if c else None, b, t) for c, b, t in cursor]

    def receive(self, connection: Connection, max_messages: int) -> list[ReceivedMessage]:
        """Claim up to `max_messages` conversation heads; orphans come back one at a time.

        The scan starts at this consumer's low-water mark; the stragglers below it (at most
        64 ids) are looked up by id and come first (messaging/low_water.py).

        An orphan whose worker died on every allowed attempt is not delivered again: it goes
        straight to the dead letters (in the same receive, which may still claim other
        messages).
        """
        mark, stragglers = self.low_water.bounds(connection)
        with connection.cursor(row_factory=dict_row) as cursor:
            # Bodies keep their numbers exact (Decimal), as the CES consumer wrote them; one
            # nested too deep to parse comes as an `UnreadableBody`, dead-lettered as malformed.
            set_json_loads(loads_stored, cursor)
            cursor.execute(
                _RECEIVE,
                {
                    "queue": self.queue_name,
                    "limit": max_messages,
                    "lease": self.lease_seconds,
                    "max_attempts": self.max_attempts,
                    "mark": mark,
                    "stragglers": stragglers,
                },
            )
            rows = cursor.fetchall()
        received: list[ReceivedMessage] = []
        for row in sorted(rows, key=lambda row: int(row["message_id"])):
            exhausted = bool(row.pop("exhausted"))
            message = ReceivedMessage(**row)
            if not exhausted:
                received.append(message)
                continue
            with connection.transaction():
                self.dead_letter(
                    connection,
                    message,
                    POISON_REASON.format(max_attempts=self.max_attempts),
                    Failure(
                        exception_type=None,
                        message=message.last_error or ORPHAN_ERROR.format(attempt=message.attempts),
                        traceback=None,
                    ),
                )
        return received

    def complete(self, connection: Connection, messages: Sequence[ReceivedMessage]) -> int:
        """Remove handled messages (in the handler's transaction, for exactly-once effects)."""
        if not messages:
            return 0
        row = connection.execute(
            _COMPLETE, {"ids": [m.message_id for m in messages], "queue": self.queue_name}
        ).fetchone()
        return 0 if row is None else int(row[0])

    def abandon(
        self,
        connection: Connection,
        message: ReceivedMessage,
        error: BaseException | None = None,
        retry_after_seconds: float = 0.0,
    ) -> None:
        """Give the message back; the attempt stays counted."""
        connection.execute(
            "UPDATE broker_messages SET locked_by = NULL, locked_until = NULL, "
            "available_at = now() + make_interval(secs => %s), last_error = %s "
            "WHERE message_id = %s",
            (
                retry_after_seconds,
                None if error is None else storable_text(f"{type(error).__name__}: {error}"),
                message.message_id,
            ),
        )

    def delay(self, connection: Connection, message: ReceivedMessage, seconds: float) -> None:
        """Put the message back for later without counting this delivery as a failed attempt."""
        connection.execute(
            "UPDATE broker_messages SET locked_by = NULL, locked_until = NULL, "
            "available_at = now() + make_interval(secs => %s), "
            "attempts = greatest(attempts - 1, 0) WHERE message_id = %s",
            (max(0.0, seconds), message.message_id),
        )

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
        """Move the message to `message_dead_letters` with the reason and failure details."""
        failure = failure or Failure(None, None, None)
        details = {
            "queue": message.queue_name,
            "message_type": message.message_type,
            "attempts": str(message.attempts if attempts is None else attempts),
            **(metadata or {}),
        }
        row = connection.execute(
            _DEAD_LETTER,
            {
                "message_id": message.message_id,
                "attempts": message.attempts if attempts is None else attempts,
                "reason": storable_text(reason[:512]),
                "exception_type": _storable(failure.exception_type),
                "exception_message": _storable(failure.message),
                "exception_traceback": _storable(failure.traceback),
                "metadata": json.dumps(storable_json(details)),
            },
        ).fetchone()
        if row is None:
            return None
        connection.execute(
            "INSERT INTO broker_throughput AS t (queue_name, bucket, worker_pid, dead_lettered) "
            "VALUES (%s, date_trunc('second', now()), pg_backend_pid(), 1) "
            "ON CONFLICT (queue_name, bucket, worker_pid) DO UPDATE SET "
            "dead_lettered = t.dead_lettered + 1",
            (self.queue_name,),
        )
        return int(row[0])


_DEAD_LETTER_UNSENT = """
WITH letter AS (
    INSERT INTO message_dead_letters (
        message_id, queue_name, conversation_id, message_type, body, enqueued_at, attempts,
        reason, exception_type, exception_message, exception_traceback, metadata)
    VALUES (nextval(pg_get_serial_sequence('broker_messages', 'message_id')), %(queue)s,
            %(conversation)s, %(type)s, %(body)s::jsonb, now(), %(attempts)s, %(reason)s,
            %(exception_type)s, %(exception_message)s, %(exception_traceback)s,
            %(metadata)s::jsonb)
    -- A Kafka record already dead-lettered (delivered again: its offset was not committed)
    -- meets the unique index on its topic, partition, offset and timestamp (migration 0037).
    ON CONFLICT DO NOTHING
    RETURNING dead_letter_id
), counted AS (
    INSERT INTO broker_throughput AS t (queue_name, bucket, worker_pid, dead_lettered)
    SELECT %(queue)s, date_trunc('second', now()), pg_backend_pid(), 1 FROM letter
    ON CONFLICT (queue_name, bucket, worker_pid)
    DO UPDATE SET dead_lettered = t.dead_lettered + 1
)
SELECT dead_letter_id FROM letter
"""


def dead_letter_unsent(
    connection: Connection,
    broker: Broker,
    message: OutgoingMessage,
    *,
    body_text: str,
    reason: str,
    failure: Failure,
    metadata: Mapping[str, JsonValue],
    attempts: int = 0,
) -> int | None:
    """Set aside a message that could not be sent, or that came from another transport (in
    the caller's transaction).

    It goes straight to `message_dead_letters` with ``attempts`` (0: never delivered) and a
    message id drawn from the queue's sequence (never used by another message), so
    `deadletters list / show / replay / purge` treat it like any other. `body_text` is its body
    as JSON text (any size). Returns its id, or None when a dead letter of the same Kafka
    record (``metadata``'s `topic`, `partition`, `offset` and `timestamp_ms`, `transport`
    `kafka`) is already there: nothing is written then (docs/messaging.md).
    """
    row = connection.execute(
        _DEAD_LETTER_UNSENT,
        {
            "queue": broker.queue_name,
            "conversation": _storable(message.conversation_id),
            "type": storable_text(message.message_type or broker.settings.message_type_name),
            "body": body_text,
            "reason": storable_text(reason[:512]),
            "exception_type": _storable(failure.exception_type),
            "exception_message": _storable(failure.message),
            "exception_traceback": _storable(failure.traceback),
            "attempts": attempts,
            "metadata": json.dumps(
                storable_json({"queue": broker.queue_name, "attempts": str(attempts), **metadata})
            ),
        },
    ).fetchone()
    return None if row is None else int(row[0])


def _storable(text: str | None) -> str | None:
    """``text`` as a `text` column stores it (NUL and lone surrogates replaced visibly)."""
    return None if text is None else storable_text(text)


def prune_throughput(connection: Connection, retention_minutes: int) -> int:
    """Delete the throughput counters (of every queue) older than `retention_minutes`."""
    cursor = connection.execute(
        "DELETE FROM broker_throughput WHERE bucket < now() - make_interval(mins => %s)",
        (retention_minutes,),
    )
    return cursor.rowcount
