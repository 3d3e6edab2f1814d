"""Graph ids as text: they hold every key the source tables allow.

`principal:<tenant>:<principal>` alone reaches 10 + 64 + 1 + 256 characters, over the 256 of
`graph_nodes.node_id`, and edge ids join two node ids. varchar → text needs no table rewrite.
The longest id the source keys allow stays far below the btree entry limit (see
`tests/unit/sync/test_sync_graph_ids.py`).

Revision ID: 0010
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_COLUMNS = (
    ("graph_nodes", "node_id", 256),
    ("graph_edges", "edge_id", 576),
    ("graph_edges", "from_node_id", 256),
    ("graph_edges", "to_node_id", 256),
)


def upgrade() -> None:
    for table, column, length in _COLUMNS:
        op.alter_column(
            table,
            column,
            type_=sa.Text(),
            existing_type=sa.String(length=length),
            existing_nullable=False,
        )


def downgrade() -> None:
    for table, column, length in _COLUMNS:
        op.alter_column(
            table,
            column,
            type_=sa.String(length=length),
            existing_type=sa.Text(),
            existing_nullable=False,
        )
