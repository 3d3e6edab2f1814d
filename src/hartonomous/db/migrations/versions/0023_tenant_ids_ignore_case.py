"""Tenant ids are unique ignoring case, as every policy compares them (docs/security.md).

Bans, operation deny lists and rate-limit filters compare tenant ids case-insensitively, so
`acme` and `ACME` as two tenants would share a ban. A unique index on ``lower(tenant_id)``
refuses the second. A database that already holds such a pair is refused, naming the ids:
an operator merges or renames one of them first (docs/security.md, "Tenants").

Revision ID: 0023
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0016"
branch_labels = None
depends_on = None

INDEX = "uq_tenants_tenant_id_ignoring_case"


def upgrade() -> None:
    clashes = op.get_bind().execute(
        sa.text(
            "SELECT string_agg(tenant_id, ', ' ORDER BY tenant_id) FROM tenants "
            "GROUP BY lower(tenant_id) HAVING count(*) > 1"
        )
    )
    pairs = [str(row[0]) for row in clashes]
    if pairs:
        raise RuntimeError(
            "tenant ids that differ only in case: "
            + "; ".join(pairs)
            + " (policies compare tenant ids ignoring case; rename or merge one of each before "
            "upgrading: docs/security.md, section Tenants)"
        )
    op.create_index(INDEX, "tenants", [sa.text("lower(tenant_id)")], unique=True)


def downgrade() -> None:
    op.drop_index(INDEX, table_name="tenants")
