"""Event backbone: broker messages, dead letters, CDC checkpoints (docs/messaging.md, docs/cdc.md).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _now() -> sa.TextClause:
    return sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "broker_messages",
        sa.Column("message_id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("queue_name", sa.String(length=128), nullable=False),
        sa.Column("conversation_id", sa.String(length=512), nullable=True),
        sa.Column("message_type", sa.String(length=256), nullable=False),
        sa.Column("body", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column(
            "available_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False
        ),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("locked_by", sa.Integer(), nullable=True),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("replayed_from", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_broker_messages")),
    )
    op.create_index(
        "ix_broker_messages_available",
        "broker_messages",
        ["queue_name", "message_id"],
        unique=False,
        postgresql_where=sa.text("locked_by IS NULL"),
    )
    op.create_index(
        "ix_broker_messages_conversation",
        "broker_messages",
        ["queue_name", "conversation_id", "message_id"],
        unique=False,
        postgresql_where=sa.text("conversation_id IS NOT NULL"),
    )
    op.create_index(
        "ix_broker_messages_in_flight",
        "broker_messages",
        ["queue_name", "message_id"],
        unique=False,
        postgresql_where=sa.text("locked_by IS NOT NULL"),
    )
    op.create_table(
        "broker_throughput",
        sa.Column("queue_name", sa.String(length=128), nullable=False),
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        sa.Column("worker_pid", sa.Integer(), nullable=False),
        sa.Column("completed", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("dead_lettered", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint(
            "queue_name", "bucket", "worker_pid", name=op.f("pk_broker_throughput")
        ),
    )
    op.create_table(
        "message_dead_letters",
        sa.Column("dead_letter_id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("queue_name", sa.String(length=128), nullable=False),
        sa.Column("conversation_id", sa.String(length=512), nullable=True),
        sa.Column("message_type", sa.String(length=256), nullable=False),
        sa.Column("body", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=512), nullable=False),
        sa.Column("exception_type", sa.String(length=256), nullable=True),
        sa.Column("exception_message", sa.Text(), nullable=True),
        sa.Column("exception_traceback", sa.Text(), nullable=True),
        sa.Column("metadata", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("replayed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("replay_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("replayed_message_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("dead_letter_id", name=op.f("pk_message_dead_letters")),
    )
    op.create_index(
        op.f("ix_message_dead_letters_created_at"),
        "message_dead_letters",
        ["created_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_message_dead_letters_reason"), "message_dead_letters", ["reason"], unique=False
    )
    op.create_table(
        "cdc_checkpoints",
        sa.Column("consumer_name", sa.String(length=128), nullable=False),
        sa.Column("slot_name", sa.String(length=63), nullable=False),
        sa.Column("last_lsn", sa.String(length=32), nullable=False),
        sa.Column("events_total", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.PrimaryKeyConstraint("consumer_name", name=op.f("pk_cdc_checkpoints")),
    )


def downgrade() -> None:
    op.drop_table("cdc_checkpoints")
    op.drop_table("message_dead_letters")
    op.drop_table("broker_throughput")
    op.drop_table("broker_messages")
