"""When a tenant or principal was disabled: `tenants.disabled_at`, `principals.disabled_at`.

The sync worker refused every event of a disabled tenant or principal, also those committed
while it was still active (work done and stored before the disable: holdings with no graph
node and no ledger row until an `enable` and a replay), and also the tenant's or principal's
own change event, so the graph kept showing it active. Now a disable records the instant it
took effect (`clock_timestamp()` once it holds the tenant's state lock, so every batch that
committed before it has an earlier commit time) and the worker refuses only the events
committed from then on (docs/security.md). A row disabled before this revision gets its
`updated_at`, the time of its last change.

Revision ID: 0036
Revises: 0035
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0036"
down_revision = "0035"
branch_labels = None
depends_on = None

TABLES = ("tenants", "principals")


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("disabled_at", sa.DateTime(timezone=True)))
        op.execute(f"UPDATE {table} SET disabled_at = updated_at WHERE NOT is_active")


def downgrade() -> None:
    for table in TABLES:
        op.drop_column(table, "disabled_at")
