"""A heartbeat's age is never negative (issue 16's fourth trial: `status` said "beat -0.053s
ago"): it is measured at the reading statement's clock, not at its transaction's start, which
a beat committed meanwhile postdates (real PostgreSQL, the real Heartbeat)."""

from __future__ import annotations

from sqlalchemy import Engine, select, text

from hartonomous.config import Settings
from hartonomous.db.tables.operations import beat_age_seconds, heartbeats_seen
from hartonomous.messaging.heartbeat import Heartbeat


def test_a_beat_written_after_the_reader_began_is_not_negative_seconds_old(
    engine: Engine, database_url: str
) -> None:
    with engine.connect() as connection:
        # The reader's transaction begins (its now() is fixed from here on) ...
        connection.execute(text("SELECT pg_sleep(0.05)"))
        # ... and a beat is written after it, on the heartbeat's own session.
        beat = Heartbeat(database_url, Settings(), "sync-worker")
        beat.beat("running")
        beat.end_session()
        ages = connection.execute(select(beat_age_seconds).select_from(heartbeats_seen)).scalars()
        ages = list(ages)
    assert len(ages) == 1
    assert ages[0] >= 0, ages
