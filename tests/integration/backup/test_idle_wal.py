"""An idle `up` writes no WAL: heartbeats and the CES consumer's liveness stay out of it, so
`archive_timeout` archives nothing while nothing happens (docs/operations.md, "Heartbeats and
readiness"; real `up`, real PostgreSQL 18 archiving every second)."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
from prometheus_client.parser import text_string_to_metric_families
from tests.conftest import clean_environment
from tests.integration.test_up import RunningUp

from hartonomous.db.connection import libpq_url
from hartonomous.db.embedded import EmbeddedPostgres

BEAT_SECONDS = 0.2
STALE_SECONDS = 10 * BEAT_SECONDS
# The window that must write nothing: 100 heartbeat periods, and longer than the CES
# consumer's `caught_up_at` refresh (10 s) plus PostgreSQL's running-transactions record
# (some 15 s after a write), which refreshed each other for ever before.
QUIET_SECONDS = 100 * BEAT_SECONDS
HANG_GUARD_SECONDS = 180  # a shared, loaded machine: a hang guard, not a performance claim


def _ready(url: str) -> dict[str, Any]:
    answer = httpx.get(f"{url}/health/ready", timeout=30)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def _wal(conn: psycopg.Connection[Any]) -> tuple[str, int]:
    row = conn.execute(
        "SELECT pg_current_wal_insert_lsn()::text, archived_count FROM pg_stat_archiver"
    ).fetchone()
    assert row is not None
    return str(row[0]), int(row[1])


# ~60 s under load: a cold `up` (initdb, migrations), then quiet windows of 20 s.
def test_an_idle_up_writes_no_wal_while_its_services_keep_beating(data_dir: Path) -> None:
    env = clean_environment()
    env["HARTONOMOUS_DATA_DIR"] = str(data_dir)
    env["HARTONOMOUS_BACKUP__ARCHIVE_WAL"] = "true"
    env["HARTONOMOUS_BACKUP__ARCHIVE_TIMEOUT_SECONDS"] = "1"  # any write: a segment a second
    env["HARTONOMOUS_HEALTH__HEARTBEAT_INTERVAL_SECONDS"] = str(BEAT_SECONDS)
    env["HARTONOMOUS_HEALTH__HEARTBEAT_STALE_SECONDS"] = str(STALE_SECONDS)
    env["HARTONOMOUS_TELEMETRY__METRICS_ACCESS"] = "open"
    up = RunningUp(env, data_dir, log=data_dir / "up.log")
    try:
        deadline = time.monotonic() + HANG_GUARD_SECONDS
        while (ready := _ready(up.url))["status"] != "ready":
            assert time.monotonic() < deadline, f"up never became ready: {ready}"
            time.sleep(BEAT_SECONDS)
        url = libpq_url(EmbeddedPostgres(data_dir).url)
        with psycopg.connect(url, autocommit=True) as conn:
            # Start-up wrote WAL (migrations, seed, first beats); PostgreSQL logs a
            # running-transactions record some seconds after the last write. Then quiet.
            windows: list[tuple[str, str, int, int]] = []
            while True:
                before, archived_before = _wal(conn)
                beats_before = {
                    s["instance"]: s["last_beat_at"] for s in _ready(up.url)["services"]
                }
                time.sleep(QUIET_SECONDS)
                after, archived_after = _wal(conn)
                ready = _ready(up.url)
                windows.append((before, after, archived_before, archived_after))
                if before == after:
                    break
                assert time.monotonic() < deadline, (
                    f"WAL written in every window of {QUIET_SECONDS} s: {windows[-5:]}"
                )
            assert archived_after == archived_before, windows[-1]
            # ... while every service kept beating: readiness saw beats in the window.
            assert ready["status"] == "ready", ready
            beats_after = {s["instance"]: s["last_beat_at"] for s in ready["services"]}
            for service in ready["services"]:
                assert beats_after[service["instance"]] > beats_before[service["instance"]], service
                assert service["age_seconds"] < STALE_SECONDS, service
            # ... and /metrics sees the same beats.
            scraped = httpx.get(f"{up.url}/metrics", timeout=30)
            assert scraped.status_code == 200, scraped.text
            ages = [
                sample.value
                for family in text_string_to_metric_families(scraped.text)
                if family.name == "hartonomous_service_heartbeat_age_seconds"
                for sample in family.samples
            ]
            assert len(ages) == len(ready["services"]), ages
            assert max(ages) < STALE_SECONDS, ages
            # A read changes nothing either; a write does (the measure is live).
            conn.execute("INSERT INTO tenants (tenant_id, display_name) VALUES ('w', 'w')")
            assert _wal(conn)[0] != after
    finally:
        up.stop(signal.SIGTERM)
