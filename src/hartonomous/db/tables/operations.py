"""Service heartbeats: each running background service's last sign of life (docs/operations.md).

One row per service instance (``service_name``, ``instance`` = ``host:pid``), written by the
service's own loop when its state or detail changes; the beats in between are statements on the
instance's heartbeat session (``backend_pid``, ``backend_start``), read back through
``service_heartbeat_sessions()`` (migration 0035): ``beat_seen_at`` is the later of the two, so
an idle system writes no WAL for its heartbeats. `/health/ready` reads them. Times are the
database's clock on both sides, so no process clock takes part.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Integer,
    String,
    Table,
    Text,
    and_,
    case,
    false,
    func,
    literal,
)

from hartonomous.db.tables.base import metadata

SERVICE_STATES = (
    "starting",
    "running",
    "failing",
    "standby",
    "stopped",
    "failed",
    "paused",
)

service_heartbeats = Table(
    "service_heartbeats",
    metadata,
    Column("service_name", String(64), primary_key=True),
    Column("instance", String(320), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("detail", Text),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_beat_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The instance's heartbeat session when the row was written (a pid alone may be reused).
    Column("backend_pid", Integer),
    Column("backend_start", DateTime(timezone=True)),
    CheckConstraint(
        "state IN (" + ", ".join(f"'{state}'" for state in SERVICE_STATES) + ")", name="state"
    ),
)

# Every open heartbeat session: (pid, backend_start, query_start: its last beat's statement).
heartbeat_sessions = (
    func.service_heartbeat_sessions()
    .table_valued(
        Column("pid", Integer),
        Column("backend_start", DateTime(timezone=True)),
        Column("query_start", DateTime(timezone=True)),
    )
    .alias("heartbeat_sessions")
)
heartbeats_seen = service_heartbeats.outerjoin(
    heartbeat_sessions,
    and_(
        heartbeat_sessions.c.pid == service_heartbeats.c.backend_pid,
        heartbeat_sessions.c.backend_start == service_heartbeats.c.backend_start,
    ),
)
"""The heartbeat rows joined with their open sessions (select from it with ``beat_seen_at``)."""
beat_seen_at = func.greatest(
    service_heartbeats.c.last_beat_at, heartbeat_sessions.c.query_start
).label("beat_seen_at")
"""An instance's last beat: its row's write or its session's last statement (NULLs ignored)."""
beat_age_seconds = func.greatest(
    literal(0.0), func.extract("epoch", func.clock_timestamp() - beat_seen_at.element)
).label("age_seconds")
"""Seconds since ``beat_seen_at``, never negative: measured at the statement's clock, not the
transaction's start (``now()``), which a heartbeat session's later statement can postdate
("beat -0.053s ago")."""

# States of an instance whose loop has not ended: claimed only while its heartbeat session is open.
LIVE_STATES = ("starting", "running", "failing", "standby", "paused")
shown_state = case(
    (
        and_(heartbeat_sessions.c.pid.is_(None), service_heartbeats.c.state.in_(LIVE_STATES)),
        literal("gone"),
    ),
    else_=service_heartbeats.c.state,
).label("shown_state")
"""The row's state, or ``gone`` for a live state whose heartbeat session is closed: the
process ended without saying so (killed, or the source's row in a restored cluster). Select
from ``heartbeats_seen``. ``gone`` is no state a service writes: alerts on ``running`` skip it."""

# The operator's sync pause (`sync pause` / `sync resume`): one row, read by every sync loop.
sync_control = Table(
    "sync_control",
    metadata,
    Column("scope", String(16), primary_key=True),
    Column("paused", Boolean, nullable=False, server_default=false()),
    Column("paused_at", DateTime(timezone=True)),
    Column("paused_by", String(320)),
    Column("reason", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("scope = 'sync'", name="single_row"),
)
