"""Sync pause: an operator's flag that every sync process honours, and a `paused` heartbeat.

`hartonomous sync pause` sets the one row of ``sync_control``; the CES consumer and the sync
worker read it on every turn of their loops and hold off (beating ``paused``) until `sync
resume` clears it (docs/operations.md, "Pausing sync").

Revision ID: 0031
Revises: 0029
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0031"
down_revision = "0029"
branch_labels = None
depends_on = None

_CHECK = "ck_service_heartbeats_state"
_OLD_STATES = "'starting', 'running', 'failing', 'standby', 'stopped', 'failed'"


def upgrade() -> None:
    op.create_table(
        "sync_control",
        # One row: the platform's sync is paused or not (the key keeps it single).
        sa.Column("scope", sa.String(16), primary_key=True),
        sa.Column("paused", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("paused_at", sa.DateTime(timezone=True)),
        sa.Column("paused_by", sa.String(320)),
        sa.Column("reason", sa.Text()),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.CheckConstraint("scope = 'sync'", name="single_row"),
    )
    op.execute("INSERT INTO sync_control (scope) VALUES ('sync')")
    op.drop_constraint(op.f(_CHECK), "service_heartbeats", type_="check")
    op.create_check_constraint(
        op.f(_CHECK), "service_heartbeats", f"state IN ({_OLD_STATES}, 'paused')"
    )


def downgrade() -> None:
    op.execute("UPDATE service_heartbeats SET state = 'standby' WHERE state = 'paused'")
    op.drop_constraint(op.f(_CHECK), "service_heartbeats", type_="check")
    op.create_check_constraint(op.f(_CHECK), "service_heartbeats", f"state IN ({_OLD_STATES})")
    op.drop_table("sync_control")
