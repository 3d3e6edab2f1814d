"""Operator access to `message_dead_letters`: list, show, replay and purge."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from psycopg.rows import dict_row

from hartonomous.errors import NotFoundError
from hartonomous.messaging.broker import (
    Broker,
    Connection,
    ExactRecord,
    MessageTooLargeError,
    OutgoingMessage,
)
from hartonomous.messaging.transport import Publisher, SizeLimited, Transport

_SUMMARY = (
    "dead_letter_id, message_id, queue_name, conversation_id, message_type, attempts, reason, "
    "exception_type, left(exception_message, 500) AS exception_message, created_at, "
    "replayed_at, replay_count, body->>'type' AS event_type"
)


class DeadLetterNotFoundError(NotFoundError, LookupError):
    def __init__(self, dead_letter_id: int) -> None:
        super().__init__(f"dead letter {dead_letter_id} does not exist")


@dataclass(frozen=True)
class ReplaySelection:
    """Which dead letters to replay: one id, every pending one, or those with a reason."""

    dead_letter_id: int | None = None
    reason: str | None = None
    everything: bool = False

    def where(self) -> tuple[str, dict[str, Any]]:
        if self.dead_letter_id is not None:
            return "dead_letter_id = %(id)s", {"id": self.dead_letter_id}
        if self.reason is not None:
            return "replayed_at IS NULL AND reason = %(reason)s", {"reason": self.reason}
        if self.everything:
            return "replayed_at IS NULL", {}
        raise ValueError("say which dead letters to replay: an id, all of them, or a reason")


def list_dead_letters(
    connection: Connection,
    limit: int = 50,
    include_replayed: bool = False,
    before_id: int | None = None,
) -> list[dict[str, Any]]:
    """Dead letters newest first (by ``dead_letter_id``), only those below ``before_id`` if set."""
    conditions = ["TRUE" if include_replayed else "replayed_at IS NULL"]
    if before_id is not None:
        conditions.append("dead_letter_id < %(before)s")
    with connection.cursor(row_factory=dict_row) as cursor:
        cursor.execute(
            f"SELECT {_SUMMARY} FROM message_dead_letters WHERE {' AND '.join(conditions)} "
            "ORDER BY dead_letter_id DESC LIMIT %(limit)s",
            {"limit": limit, "before": before_id},
        )
        return cursor.fetchall()


def show_dead_letter(connection: Connection, dead_letter_id: int) -> dict[str, Any]:
    with connection.cursor(row_factory=dict_row) as cursor:
        cursor.execute(
            "SELECT * FROM message_dead_letters WHERE dead_letter_id = %s", (dead_letter_id,)
        )
        row = cursor.fetchone()
    if row is None:
        raise DeadLetterNotFoundError(dead_letter_id)
    return row


def replay(connection: Connection, transport: Transport, selection: ReplaySelection) -> list[int]:
    """Re-enqueue the selected dead letters (attempts reset) on ``transport``; returns the new
    message ids (Kafka: the records' offsets).

    The dead letter stays, marked with when it was replayed and as which message (the broker:
    `replayed_message_id`, and the new message records `replayed_from`; Kafka: `replayed_to`,
    `replayed_partition` and `replayed_offset` in its metadata, after the cluster acknowledged
    the records); all in one transaction, so a replay Kafka did not acknowledge
    (`UnavailableError`) marks nothing.
    """
    if isinstance(transport, Publisher):
        return _republish(connection, transport, selection)
    if not isinstance(transport, Broker):
        raise TypeError(f"{type(transport).__name__} cannot replay dead letters")
    broker = transport
    where, params = selection.where()
    with connection.transaction():
        rows = connection.execute(
            "WITH chosen AS ("
            f"  SELECT dead_letter_id FROM message_dead_letters WHERE {where} "
            "   ORDER BY dead_letter_id FOR UPDATE), "
            "ins AS ("
            "  INSERT INTO broker_messages "
            "    (queue_name, conversation_id, message_type, body, enqueued_at, replayed_from) "
            "  SELECT d.queue_name, d.conversation_id, d.message_type, d.body, d.enqueued_at, "
            "         d.dead_letter_id "
            "  FROM message_dead_letters d JOIN chosen USING (dead_letter_id) "
            "  ORDER BY d.dead_letter_id "
            "  RETURNING message_id, replayed_from) "
            "UPDATE message_dead_letters d SET replayed_at = now(), "
            "  replay_count = d.replay_count + 1, replayed_message_id = ins.message_id "
            "FROM ins WHERE d.dead_letter_id = ins.replayed_from "
            "RETURNING ins.message_id",
            params,
        ).fetchall()
        if selection.dead_letter_id is not None and not rows:
            raise DeadLetterNotFoundError(selection.dead_letter_id)
        connection.execute("SELECT pg_notify(%s, '')", (broker.channel,))
    return sorted(int(row[0]) for row in rows)


def _kept_value(metadata: dict[str, Any] | None) -> bytes | None:
    """The record value a dead letter's metadata keeps (`value_base64`), if any."""
    kept = (metadata or {}).get("value_base64")
    return None if kept is None else base64.b64decode(kept)


def _republish(
    connection: Connection, transport: Publisher, selection: ReplaySelection
) -> list[int]:
    where, params = selection.where()
    with connection.transaction():
        rows = connection.execute(
            "SELECT dead_letter_id, conversation_id, message_type, body::text, metadata "
            f"FROM message_dead_letters WHERE {where} ORDER BY dead_letter_id FOR UPDATE",
            params,
        ).fetchall()
        if selection.dead_letter_id is not None and not rows:
            raise DeadLetterNotFoundError(selection.dead_letter_id)
        # A Kafka record goes back exactly as it came (value, key and headers its dead
        # letter keeps); one dead-lettered before they were kept, as the bytes it came as
        # when it was not JSON (`value_base64`), not as the JSON string its body keeps.
        messages = [
            OutgoingMessage(
                None,
                row[1],
                row[2],
                body_text=row[3],
                raw=_kept_value(row[4]),
                record=ExactRecord.from_metadata(row[4]),
            )
            for row in rows
        ]
        if isinstance(transport, SizeLimited):
            for row, message in zip(rows, messages, strict=True):
                try:
                    transport.check_size(message)
                except MessageTooLargeError as exc:
                    raise MessageTooLargeError(
                        f"not replayed: dead letter {row[0]}: {exc}", setting=exc.setting
                    ) from None
        sent = transport.publish(messages)
        connection.execute(
            "UPDATE message_dead_letters d SET replayed_at = now(), "
            "replay_count = d.replay_count + 1, replayed_message_id = NULL, "
            "metadata = coalesce(d.metadata, '{}') || jsonb_build_object('replayed_to', "
            "u.destination, 'replayed_partition', u.part::text, 'replayed_offset', u.off::text) "
            "FROM unnest(%s::bigint[], %s::text[], %s::int[], %s::bigint[]) AS u(id, "
            "destination, part, off) WHERE d.dead_letter_id = u.id",
            (
                [row[0] for row in rows],
                [record.destination for record in sent],
                [record.partition for record in sent],
                [record.offset for record in sent],
            ),
        )
    return [record.offset for record in sent]


def purge(connection: Connection, older_than: timedelta) -> int:
    """Delete dead letters created more than `older_than` ago; returns how many."""
    with connection.transaction():
        cursor = connection.execute(
            "DELETE FROM message_dead_letters WHERE created_at < now() - %s", (older_than,)
        )
    return cursor.rowcount
