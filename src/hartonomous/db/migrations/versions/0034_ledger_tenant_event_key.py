"""The usage ledger's exactly-once key becomes (tenant_id, event_id).

`billing_usage_ledger.event_id` was unique across tenants because a shared model's events were
billed to its first holder as the sync worker found it, and that holder can change between a
delivery and a redelivery. The CES consumer now resolves the billed party at capture and the
event carries it (`cdc/billed.py`), so every delivery bills the same tenant and the key can lead
with `tenant_id` like every other tenant-scoped key (docs/scale-out.md, "Keys";
tests/integration/test_tenant_keys.py). The downgrade restores the global key; PostgreSQL
refuses it (naming the event id) when one event id was billed to two tenants since.

Revision ID: 0034
Revises: 0033
"""

from __future__ import annotations

from alembic import op

revision = "0034"
down_revision = "0033"
branch_labels = None
depends_on = None

TABLE = "billing_usage_ledger"


def upgrade() -> None:
    op.create_unique_constraint(
        "uq_billing_usage_ledger_tenant_id_event_id", TABLE, ["tenant_id", "event_id"]
    )
    op.drop_constraint("uq_billing_usage_ledger_event_id", TABLE, type_="unique")


def downgrade() -> None:
    op.create_unique_constraint("uq_billing_usage_ledger_event_id", TABLE, ["event_id"])
    op.drop_constraint("uq_billing_usage_ledger_tenant_id_event_id", TABLE, type_="unique")
