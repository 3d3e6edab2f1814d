"""Ingestion jobs that outlive their process: the `interrupted` job state, `not_done` file rows
and the plan of files a running job has still to report.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _replace_check(table: str, name: str, condition: str) -> None:
    op.drop_constraint(op.f(f"ck_{table}_{name}"), table, type_="check")
    op.create_check_constraint(op.f(f"ck_{table}_{name}"), table, condition)


def upgrade() -> None:
    _replace_check(
        "ingestion_jobs",
        "status",
        "status IN ('running', 'completed', 'completed_with_errors', 'failed', 'interrupted')",
    )
    _replace_check(
        "ingestion_job_atoms", "status", "status IN ('ingested', 'unchanged', 'failed', 'not_done')"
    )
    _replace_check(
        "ingestion_job_atoms",
        "failed_rows_have_no_atom",
        "(status IN ('failed', 'not_done')) = (atom_id IS NULL)",
    )
    op.create_table(
        "ingestion_job_plans",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "job_id"],
            ["ingestion_jobs.tenant_id", "ingestion_jobs.job_id"],
            name=op.f("fk_ingestion_job_plans_tenant_id_ingestion_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id", "job_id", "ordinal", name=op.f("pk_ingestion_job_plans")
        ),
    )


def downgrade() -> None:
    op.drop_table("ingestion_job_plans")
    op.execute("UPDATE ingestion_jobs SET status = 'failed' WHERE status = 'interrupted'")
    op.execute("DELETE FROM ingestion_job_atoms WHERE status = 'not_done'")
    _replace_check(
        "ingestion_job_atoms", "failed_rows_have_no_atom", "(status = 'failed') = (atom_id IS NULL)"
    )
    _replace_check("ingestion_job_atoms", "status", "status IN ('ingested', 'unchanged', 'failed')")
    _replace_check(
        "ingestion_jobs",
        "status",
        "status IN ('running', 'completed', 'completed_with_errors', 'failed')",
    )
