"""Keys of tenant-scoped tables led by `tenant_id`: `api_keys` and `billing_ledger_archive_totals`.

A distributed PostgreSQL (Citus, docs/scale-out.md) shards tenant-scoped tables by `tenant_id`,
and a primary or unique key there must contain the distribution column; leading with it also
keeps one tenant's rows together in every index. `api_keys` was keyed by `key_id` alone: its
key becomes (tenant_id, key_id), and authentication, which knows only the key id of a token,
finds the row through a plain index on `key_id` (key ids are 64-bit random). The archive
totals' key (archive_id, tenant_id, operation) is reordered to (tenant_id, archive_id,
operation). tests/integration/test_tenant_keys.py keeps every tenant-scoped table so.

Revision ID: 0033
Revises: 0031
"""

from __future__ import annotations

from alembic import op

revision = "0033"
down_revision = "0032"
branch_labels = None
depends_on = None


def _rekey(table: str, columns: list[str]) -> None:
    op.drop_constraint(f"pk_{table}", table, type_="primary")
    op.create_primary_key(f"pk_{table}", table, columns)


def upgrade() -> None:
    _rekey("api_keys", ["tenant_id", "key_id"])
    op.create_index("ix_api_keys_key_id", "api_keys", ["key_id"])
    _rekey("billing_ledger_archive_totals", ["tenant_id", "archive_id", "operation"])


def downgrade() -> None:
    _rekey("billing_ledger_archive_totals", ["archive_id", "tenant_id", "operation"])
    op.drop_index("ix_api_keys_key_id", "api_keys")
    _rekey("api_keys", ["key_id"])
