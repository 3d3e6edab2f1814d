"""Service heartbeats: the CES consumer and sync worker record that they are alive.

`/health/ready` reports each service and is not "ready" while an expected one has not beaten
recently (docs/operations.md).

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "service_heartbeats",
        sa.Column("service_name", sa.String(64), primary_key=True),
        sa.Column("instance", sa.String(320), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text()),
        sa.Column(
            "started_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "last_beat_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
        sa.CheckConstraint(
            "state IN ('starting', 'running', 'failing', 'standby', 'stopped', 'failed')",
            name="state",
        ),
    )


def downgrade() -> None:
    op.drop_table("service_heartbeats")
