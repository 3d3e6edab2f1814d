"""Fixed-window throttle counters shared by every worker process (docs/security.md, "Throttle")."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Column, DateTime, Integer, String, Table

from hartonomous.db.tables.base import metadata

# One row per counter key; `operation` is '' for keys without an operation.
security_throttle_counters = Table(
    "security_throttle_counters",
    metadata,
    Column("subject", String(16), primary_key=True),
    Column("subject_id", String(256), primary_key=True),
    Column("operation", String(256), primary_key=True),
    Column("window_start", DateTime(timezone=True), nullable=False),
    Column("count", Integer, nullable=False),
    CheckConstraint("subject IN ('tenant', 'principal', 'key')", name="subject"),
    CheckConstraint("count >= 0", name="count_not_negative"),
)
