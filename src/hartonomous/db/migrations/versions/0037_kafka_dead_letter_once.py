"""A Kafka record is dead-lettered once, however often it is delivered.

A record whose offset was not committed after its dead letter's transaction (a crash or a
rebalance in between, or a record held behind a stuck one) is delivered again and was
dead-lettered again, so `deadletters replay --all` published it twice. A unique index over the
record's place in the log, from the dead letter's metadata (`topic`, `partition`, `offset`, and
the record's `timestamp_ms`, so a topic deleted and created again, whose offsets start over,
is not mistaken for the old one), makes the second write a no-op (`ON CONFLICT DO NOTHING`,
`messaging.broker.dead_letter_unsent`). Dead letters written before their metadata had
`timestamp_ms` are outside the index, so duplicates among them do not stop the upgrade
(docs/messaging.md).

Revision ID: 0037
Revises: 0036
"""

from __future__ import annotations

from alembic import op

revision = "0037"
down_revision = "0036"
branch_labels = None
depends_on = None

INDEX = "uq_message_dead_letters_kafka_record"


def upgrade() -> None:
    op.execute(
        f"CREATE UNIQUE INDEX {INDEX} ON message_dead_letters ("
        "(metadata->>'topic'), (metadata->>'partition'), (metadata->>'offset'), "
        "(metadata->>'timestamp_ms')) "
        "WHERE metadata->>'transport' = 'kafka' AND metadata ? 'timestamp_ms'"
    )


def downgrade() -> None:
    op.execute(f"DROP INDEX {INDEX}")
