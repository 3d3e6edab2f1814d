"""Service heartbeats: each running background service's last sign of life (docs/operations.md).

One row per service instance (``service_name``, ``instance`` = ``host:pid``), written by the
service's own loop every ``[health] heartbeat_interval_seconds``; `/health/ready` reads them.
Times are the database's ``now()`` on both sides, so no process clock takes part.
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
    false,
    func,
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
    CheckConstraint(
        "state IN (" + ", ".join(f"'{state}'" for state in SERVICE_STATES) + ")", name="state"
    ),
)

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
