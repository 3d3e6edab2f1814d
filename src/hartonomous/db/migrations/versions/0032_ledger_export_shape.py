"""The usage ledger's shape for export and insert throughput (docs/billing.md, "Measured").

- ``billing_usage_ledger.metadata`` becomes ``json`` (was ``jsonb``): the meter's JSON text is
  stored as written and printed back as stored. ``jsonb`` parsed every row's object into its
  binary form on insert and serialised it again on every read and export, which took half of
  a COPY of the ledger's rows; nothing queries inside it but a few ``->>`` look-ups, which
  ``json`` answers too. Rows already written keep jsonb's text of their object.
- The index on (billing_period, tenant_id) becomes one on (billing_period, tenant_id,
  recorded_at, event_id): the export's order, so an export reads a period in order instead of
  sorting it (the sort was a third of the export's time). It still serves every look-up by
  period and tenant.

Revision ID: 0032
Revises: 0031
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0032"
down_revision = "0031"
branch_labels = None
depends_on = None

_TABLE = "billing_usage_ledger"
_OLD_INDEX = "ix_billing_usage_ledger_billing_period_tenant_id"
_NEW_INDEX = "ix_billing_usage_ledger_export_order"


def _metadata_as(kind: str) -> None:
    op.execute(f"ALTER TABLE {_TABLE} ALTER COLUMN metadata DROP DEFAULT")
    op.alter_column(
        _TABLE,
        "metadata",
        type_=postgresql.JSON() if kind == "json" else postgresql.JSONB(),
        postgresql_using=f"metadata::text::{kind}",
        server_default=sa.text(f"'{{}}'::{kind}"),
    )


def upgrade() -> None:
    _metadata_as("json")
    op.drop_index(_OLD_INDEX, table_name=_TABLE)
    op.create_index(_NEW_INDEX, _TABLE, ["billing_period", "tenant_id", "recorded_at", "event_id"])


def downgrade() -> None:
    op.drop_index(_NEW_INDEX, table_name=_TABLE)
    op.create_index(_OLD_INDEX, _TABLE, ["billing_period", "tenant_id"])
    _metadata_as("jsonb")
