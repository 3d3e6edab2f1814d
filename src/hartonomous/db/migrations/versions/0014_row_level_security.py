"""Row-level security on every table with a `tenant_id` column (docs/security.md, "Isolation").

Each such table gets RLS enabled (not forced: the owner, which migrations and every
maintenance path connect as, bypasses it on purpose) and one policy, `tenant_isolation`, for
all commands: a row is visible and writable only when its `tenant_id` equals the transaction's
`hartonomous.tenant_id` setting. Without the setting `current_setting(..., true)` is NULL (or
'' once set and reset), which equals no tenant: no row is visible or writable (fail closed).
Tables whose `tenant_id` is nullable hold rows shared by all tenants (the global rate plan,
the graph nodes of shared atoms); a second policy, `shared_rows_readable`, lets those rows be
read, never written. Tables with a `visibility` column (holdings, search entries) hold the
public corpus; `public_rows_readable` lets its rows be read, never written. Both need a bound
tenant too: with none, nothing at all is visible.

The tables are found in the catalogue, so every tenant-scoped table created before this
revision is covered; a later migration that creates one runs the statements of
`isolate_table` below for it (tests/integration/api/test_row_level_security.py fails until
it does).

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

SETTING = "hartonomous.tenant_id"


TENANT = f"tenant_id = current_setting('{SETTING}', true)"
BOUND = f"coalesce(current_setting('{SETTING}', true), '') <> ''"


def _tenant_tables() -> list[tuple[str, bool, bool]]:
    """(table, tenant_id is nullable, has a visibility column) for every ordinary table of the
    schema with a tenant_id column."""
    rows = op.get_bind().execute(
        sa.text(
            "SELECT c.table_name, c.is_nullable = 'YES', EXISTS (SELECT 1 FROM "
            "information_schema.columns v WHERE v.table_schema = c.table_schema "
            "AND v.table_name = c.table_name AND v.column_name = 'visibility') "
            "FROM information_schema.columns c "
            "JOIN information_schema.tables t USING (table_schema, table_name) "
            "WHERE c.table_schema = current_schema() AND c.column_name = 'tenant_id' "
            "AND t.table_type = 'BASE TABLE' ORDER BY c.table_name"
        )
    )
    return [(str(name), bool(nullable), bool(public)) for name, nullable, public in rows]


def isolate_table(table: str, *, shared_rows: bool, public_rows: bool) -> None:
    """Enable row-level security on ``table`` with the policies this module describes."""
    op.execute(f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY')
    op.execute(
        f'CREATE POLICY tenant_isolation ON "{table}" USING ({TENANT}) WITH CHECK ({TENANT})'
    )
    if shared_rows:
        op.execute(
            f'CREATE POLICY shared_rows_readable ON "{table}" FOR SELECT '
            f"USING (tenant_id IS NULL AND {BOUND})"
        )
    if public_rows:
        op.execute(
            f'CREATE POLICY public_rows_readable ON "{table}" FOR SELECT '
            f"USING (visibility = 'public' AND {BOUND})"
        )


def upgrade() -> None:
    for table, nullable, public in _tenant_tables():
        isolate_table(table, shared_rows=nullable, public_rows=public)


def downgrade() -> None:
    for table, _nullable, _public in _tenant_tables():
        op.execute(f'DROP POLICY IF EXISTS public_rows_readable ON "{table}"')
        op.execute(f'DROP POLICY IF EXISTS shared_rows_readable ON "{table}"')
        op.execute(f'DROP POLICY IF EXISTS tenant_isolation ON "{table}"')
        op.execute(f'ALTER TABLE "{table}" DISABLE ROW LEVEL SECURITY')
