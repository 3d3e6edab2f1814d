"""Throttle counters may count one API key's requests (rate-limit scope `key`).

Rate limits: docs/security.md.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_NAME = "ck_security_throttle_counters_subject"


def upgrade() -> None:
    op.execute(f"ALTER TABLE security_throttle_counters DROP CONSTRAINT {_NAME}")
    op.execute(
        f"ALTER TABLE security_throttle_counters ADD CONSTRAINT {_NAME} "
        "CHECK (subject IN ('tenant', 'principal', 'key'))"
    )


def downgrade() -> None:
    op.execute("DELETE FROM security_throttle_counters WHERE subject = 'key'")
    op.execute(f"ALTER TABLE security_throttle_counters DROP CONSTRAINT {_NAME}")
    op.execute(
        f"ALTER TABLE security_throttle_counters ADD CONSTRAINT {_NAME} "
        "CHECK (subject IN ('tenant', 'principal'))"
    )
