"""WAL archiving from a configured server: `pg_receivewal` (as `up` runs it) on real PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest

from hartonomous.backup.wal_receiver import receive_wal
from hartonomous.db.connection import libpq_url
from hartonomous.messaging.services import BackgroundService

HANG_GUARD_SECONDS = 120
SLOT = "test_wal_receiver"


def test_a_configured_servers_wal_is_received_into_the_backup_directory(
    database_url: str, data_dir: Path
) -> None:
    wal = data_dir / "backups" / "wal"
    service = BackgroundService(
        "wal-receiver", lambda stop: receive_wal(database_url, wal, SLOT, stop)
    )
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        try:
            service.start()
            deadline = time.monotonic() + HANG_GUARD_SECONDS
            while conn.execute(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s AND active",
                (SLOT,),
            ).fetchone() != (1,):
                if time.monotonic() > deadline:
                    pytest.fail("hang guard: pg_receivewal never became active")
                time.sleep(0.1)
            row = conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()
            assert row is not None
            segment = str(row[0])
            conn.execute("CREATE TABLE wal_probe (n int)")
            conn.execute("INSERT INTO wal_probe SELECT generate_series(1, 1000)")
            conn.execute("SELECT pg_switch_wal()")
            while not (wal / segment).exists():
                if time.monotonic() > deadline:
                    pytest.fail(f"hang guard: {segment} never reached {wal}")
                time.sleep(0.1)
        finally:
            service.stop()
            # A physical slot outlives the test database: it would hold the cluster's WAL.
            conn.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                "WHERE slot_name = %s",
                (SLOT,),
            )
    assert not service.running
    assert (wal / segment).stat().st_size == 16 * 1024 * 1024
