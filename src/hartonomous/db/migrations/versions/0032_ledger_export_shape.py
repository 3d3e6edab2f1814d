"""The usage ledger's shape for export and insert throughput (docs/billing.md, "Measured").

- ``billing_usage_ledger.metadata`` becomes ``json`` (was ``jsonb``): the meter's JSON text is
  stored as written and printed back as stored. ``jsonb`` parsed every row's object into its
  binary form on insert and serialised it again on every read and export, which took half of
  a COPY of the ledger's rows; nothing queries inside it but a few ``->>`` look-ups (the
  invoice's plan code and unit, the catch-up's subject), which ``json`` answers too, parsing
  the text up to the key (several times jsonb's cost per row read, paid where rows are read
  rarely instead of where they are written and exported). Rows already written keep jsonb's
  text of their object.
- The index on (billing_period, tenant_id) becomes one on (billing_period, tenant_id,
  recorded_at, event_id): the export's order, so an export reads a period in order instead of
  sorting it (the sort was a third of the export's time). It still serves every look-up by
  period and tenant.
- Statistics of the number of distinct (tenant, principal, operation, day) combinations of
  ``billing_usage_rollup``: reports group by them, and without them the planner guessed a
  tenth of the groups a report by tenant, principal and operation has, hashed them in too
  little memory (spilling to disk) and sorted them again: twice the time.

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
_GROUPS = "billing_usage_rollup_groups"


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
    op.execute(
        f"CREATE STATISTICS {_GROUPS} (ndistinct) "
        "ON tenant_id, principal_id, operation, day FROM billing_usage_rollup"
    )


def downgrade() -> None:
    op.execute(f"DROP STATISTICS {_GROUPS}")
    op.drop_index(_NEW_INDEX, table_name=_TABLE)
    op.create_index(_OLD_INDEX, _TABLE, ["billing_period", "tenant_id"])
    _metadata_as("jsonb")
