"""Principals get a role (`user`, `data-scientist`, `admin`); the server gets a signing key.

Roles: docs/security.md. The key signs pagination cursors (docs/api.md).

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "principals",
        sa.Column("role", sa.String(16), nullable=False, server_default=sa.text("'user'")),
    )
    op.create_check_constraint("role", "principals", "role IN ('user', 'data-scientist', 'admin')")
    server_secrets = op.create_table(
        "server_secrets",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("secret", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.CheckConstraint("octet_length(secret) >= 32", name="secret_length"),
    )
    op.bulk_insert(
        server_secrets, [{"name": "pagination_cursor", "secret": secrets.token_bytes(32)}]
    )


def downgrade() -> None:
    op.drop_table("server_secrets")
    op.drop_constraint("role", "principals", type_="check")
    op.drop_column("principals", "role")
