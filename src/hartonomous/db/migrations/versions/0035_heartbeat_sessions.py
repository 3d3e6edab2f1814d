"""Heartbeats without WAL: a beat that changes nothing is a query on the beating session.

A beat used to rewrite its `service_heartbeats` row every `[health] heartbeat_interval_seconds`,
so an idle `up` wrote WAL every few seconds and, with `archive_timeout`, archived a 16 MiB
segment a minute for nothing. Now the row is written when the instance's state or detail
changes (and when its session is new); in between, each beat runs a read-only statement on the
instance's own heartbeat session, and the reader takes the later of the row's `last_beat_at`
and that session's `query_start` in `pg_stat_activity`. The row names the session
(`backend_pid`, `backend_start`: a pid alone may be reused); `service_heartbeat_sessions()`
lists the heartbeat sessions' last statements for roles that may not read other roles' rows of
`pg_stat_activity` (the API role): SECURITY DEFINER, only those three columns of sessions named
`hartonomous-heartbeat-*` (docs/operations.md, "Heartbeats and readiness").

Revision ID: 0035
Revises: 0034
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0035"
down_revision = "0034"
branch_labels = None
depends_on = None

TABLE = "service_heartbeats"


def upgrade() -> None:
    op.add_column(TABLE, sa.Column("backend_pid", sa.Integer()))
    op.add_column(TABLE, sa.Column("backend_start", sa.DateTime(timezone=True)))
    op.execute(
        "CREATE FUNCTION service_heartbeat_sessions() "
        "RETURNS TABLE (pid integer, backend_start timestamptz, query_start timestamptz) "
        "LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$ "
        "SELECT pid, backend_start, query_start FROM pg_stat_activity "
        "WHERE application_name LIKE 'hartonomous-heartbeat-%' $$"
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION service_heartbeat_sessions()")
    op.drop_column(TABLE, "backend_start")
    op.drop_column(TABLE, "backend_pid")
