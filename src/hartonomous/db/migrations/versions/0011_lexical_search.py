"""Full-text search over text atoms: a generated `tsvector` on `atoms` with a GIN index.

Revision ID: 0011
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import TSVECTOR

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# Frozen copy of db/tables/atoms.py's expression (a migration must not change with the code).
TEXT_SEARCH = "to_tsvector('english'::regconfig, left(coalesce(canonical_text, ''), 100000))"


def upgrade() -> None:
    op.add_column(
        "atoms",
        sa.Column("text_search", TSVECTOR(), sa.Computed(TEXT_SEARCH, persisted=True)),
    )
    op.create_index("ix_atoms_text_search", "atoms", ["text_search"], postgresql_using="gin")


def downgrade() -> None:
    op.drop_index("ix_atoms_text_search", table_name="atoms")
    op.drop_column("atoms", "text_search")
