"""A covering index for filtered searches: a tenant's search entries by space and filters.

A search first counts the entries the tenant sees under its filters (up to the planner's
exact limit) and, for a small visible set, reads their atom ids for the exact scan
(docs/search.md, "How a search runs"). With the filter columns and the atom id in one index,
both are index-only scans of exactly the matching entries; before, a modality filter over a
tenant holding most of the table was a sequential scan of every entry.

Revision ID: 0027
Revises: 0026
"""

from __future__ import annotations

from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_search_entries_filters",
        "search_entries",
        ["tenant_id", "space", "source_modality", "source_type", "held_at"],
        postgresql_include=["atom_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_search_entries_filters", table_name="search_entries")
