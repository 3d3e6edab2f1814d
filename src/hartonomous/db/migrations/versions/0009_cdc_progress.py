"""CDC progress inside a transaction, catch-up time, set-aside changes and truncations.

`next_change_index` lets the CES consumer checkpoint in the middle of a large source
transaction (bounded memory); `caught_up_at` gives the slot lag an age; `dead_lettered_total`,
`truncations_total` and `last_truncation` report what capture set aside or could not capture
(docs/cdc.md).

Revision ID: 0009
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "cdc_checkpoints",
        sa.Column("next_change_index", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column("cdc_checkpoints", sa.Column("caught_up_at", sa.DateTime(timezone=True)))
    op.add_column(
        "cdc_checkpoints",
        sa.Column(
            "dead_lettered_total", sa.BigInteger(), server_default=sa.text("0"), nullable=False
        ),
    )
    op.add_column(
        "cdc_checkpoints",
        sa.Column(
            "truncations_total", sa.BigInteger(), server_default=sa.text("0"), nullable=False
        ),
    )
    op.add_column("cdc_checkpoints", sa.Column("last_truncation", postgresql.JSONB()))


def downgrade() -> None:
    for column in (
        "last_truncation",
        "truncations_total",
        "dead_lettered_total",
        "caught_up_at",
        "next_change_index",
    ):
        op.drop_column("cdc_checkpoints", column)
