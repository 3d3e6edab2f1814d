"""The in-database broker, its dead letters and the CDC checkpoints (docs/messaging.md).

`broker_messages.body` is the CloudEvent in structured JSON mode, so `body->>'type'`,
`body->>'table'` and friends work in SQL. Delivery attempts are columns, not process memory,
so they survive crashes; a row is "in flight" while `locked_by`/`locked_until` are set.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from hartonomous.db.tables.base import metadata

broker_messages = Table(
    "broker_messages",
    metadata,
    Column("message_id", BigInteger, primary_key=True, autoincrement=True),
    # Several logical queues ([message_broker] queue_name) share this table.
    Column("queue_name", String(128), nullable=False),
    # Messages of one conversation are handled in order; NULL means "no ordering constraint".
    Column("conversation_id", String(512)),
    Column("message_type", String(256), nullable=False),
    Column("body", JSONB, nullable=False),
    Column("enqueued_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("available_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    # Backend pid of the consumer session holding the message, and when its claim lapses.
    Column("locked_by", Integer),
    Column("locked_until", DateTime(timezone=True)),
    Column("received_at", DateTime(timezone=True)),
    Column("last_error", Text),
    # Set when the message is a replay of a dead letter.
    Column("replayed_from", BigInteger),
    # Partial indexes keep every claim, insert and delete to the entries it needs: a receive
    # scans only available messages, the head-of-conversation check only ordered ones (a
    # message without a conversation gets no entry there), orphan recovery only claimed ones.
    Index(
        "ix_broker_messages_available",
        "queue_name",
        "message_id",
        postgresql_where=text("locked_by IS NULL"),
    ),
    Index(
        "ix_broker_messages_conversation",
        "queue_name",
        "conversation_id",
        "message_id",
        postgresql_where=text("conversation_id IS NOT NULL"),
    ),
    Index(
        "ix_broker_messages_in_flight",
        "queue_name",
        "message_id",
        postgresql_where=text("locked_by IS NOT NULL"),
    ),
)

# Completed messages are deleted, so throughput is counted here: one row per queue, second and
# consumer session (no two workers update the same row), pruned after an hour.
broker_throughput = Table(
    "broker_throughput",
    metadata,
    Column("queue_name", String(128), primary_key=True),
    Column("bucket", DateTime(timezone=True), primary_key=True),
    Column("worker_pid", Integer, primary_key=True),
    Column("completed", Integer, nullable=False, server_default=text("0")),
    Column("dead_lettered", Integer, nullable=False, server_default=text("0")),
)

message_dead_letters = Table(
    "message_dead_letters",
    metadata,
    Column("dead_letter_id", BigInteger, primary_key=True, autoincrement=True),
    Column("message_id", BigInteger, nullable=False),
    Column("queue_name", String(128), nullable=False),
    Column("conversation_id", String(512)),
    Column("message_type", String(256), nullable=False),
    Column("body", JSONB, nullable=False),
    Column("enqueued_at", DateTime(timezone=True), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("reason", String(512), nullable=False),
    Column("exception_type", String(256)),
    Column("exception_message", Text),
    Column("exception_traceback", Text),
    Column("metadata", JSONB),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("replayed_at", DateTime(timezone=True)),
    Column("replay_count", Integer, nullable=False, server_default=text("0")),
    Column("replayed_message_id", BigInteger),
    Index(None, "created_at"),
    Index(None, "reason"),
    # A Kafka record's dead letter, once however often it is delivered (migration 0037).
    Index(
        "uq_message_dead_letters_kafka_record",
        text("(metadata->>'topic')"),
        text("(metadata->>'partition')"),
        text("(metadata->>'offset')"),
        text("(metadata->>'timestamp_ms')"),
        unique=True,
        postgresql_where=text("metadata->>'transport' = 'kafka' AND metadata ? 'timestamp_ms'"),
    ),
)

cdc_checkpoints = Table(
    "cdc_checkpoints",
    metadata,
    Column("consumer_name", String(128), primary_key=True),
    Column("slot_name", String(63), nullable=False),
    # End LSN of the last commit whose changes were enqueued (pg_lsn text form, e.g. 0/16B3748).
    Column("last_lsn", String(32), nullable=False),
    # Changes of the transaction committing at last_lsn already enqueued (a checkpoint in the
    # middle of a large transaction); 0 when last_lsn is a transaction boundary.
    Column("next_change_index", Integer, nullable=False, server_default=text("0")),
    Column("events_total", BigInteger, nullable=False, server_default=text("0")),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # When the consumer last had every committed change enqueued (the age of the slot lag).
    Column("caught_up_at", DateTime(timezone=True)),
    # Changes set aside as dead letters, and TRUNCATEs (which produce no events).
    Column("dead_lettered_total", BigInteger, nullable=False, server_default=text("0")),
    Column("truncations_total", BigInteger, nullable=False, server_default=text("0")),
    Column("last_truncation", JSONB),
)
