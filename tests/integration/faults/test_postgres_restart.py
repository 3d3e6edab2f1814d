"""Fault: the embedded PostgreSQL restarted (`pg_ctl restart -m fast`) under a running `up`
while it ingests and syncs: every service reconnects and nothing is lost or duplicated."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
from sqlalchemy import Engine, create_engine, text
from tests.conftest import clean_environment
from tests.integration.faults.fault_support import (
    Client,
    bearer,
    drained,
    exactly_once_counts,
    running_up,
    scalar,
    wait_until,
)
from tests.integration.test_up import embedded_pg_ctl

from hartonomous.config.sections import SERVICE_NAMES
from hartonomous.db import EmbeddedPostgres


def restart_embedded(data_dir: Path) -> None:
    """`pg_ctl restart -m fast` on the embedded server, as its operator would (same options)."""
    embedded_pg_ctl(data_dir, "restart", "-m", "fast", "-w", "-t", "60")


def _heartbeats(engine: Engine) -> list[tuple[object, ...]]:
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT service_name, state, detail, last_beat_at FROM service_heartbeats")
        )
        return [tuple(row) for row in rows]


def _all_beating_since(engine: Engine, since: object) -> bool:
    beating = scalar(
        engine,
        "SELECT count(DISTINCT service_name) FROM service_heartbeats "
        "WHERE last_beat_at > :since AND state = 'running'",
        since=since,
    )
    return bool(beating == len(SERVICE_NAMES))


def test_postgres_restarted_under_up_reconnects_every_service_and_loses_nothing(
    data_dir: Path,
) -> None:
    env = clean_environment()
    env["HARTONOMOUS_DATA_DIR"] = str(data_dir)
    up = running_up(env, data_dir)
    engine = create_engine(EmbeddedPostgres(data_dir).url)
    try:
        with Client(up.url, bearer(engine, "acme")) as client:
            wait_until(lambda: exactly_once_counts(engine)["ledger rows"] >= 4, "uploads billed")
            before = client.accepted()
            engine.dispose()
            restart_embedded(data_dir)
            restarted_at = scalar(engine, "SELECT pg_postmaster_start_time()")
            # Every service beats `running` again after the restart, from the same process.
            wait_until(
                lambda: _all_beating_since(engine, restarted_at),
                "every service beating again",
                lambda: _heartbeats(engine),
            )
            # Ingestion goes on: uploads after the restart are accepted (and billed, below).
            wait_until(lambda: client.accepted() >= before + 3, "uploads after the restart")
        wait_until(lambda: drained(engine), "the sync side to catch up", up.stderr_tail)
        ready = httpx.get(f"{up.url}/health/ready", timeout=30).json()
        assert ready["status"] == "ready", ready

        # A request the restart interrupted is refused as the database being unavailable
        # (503, retry later), never answered as an internal error.
        refused = {(status, code) for _, status, code in client.answers if status != 200}
        assert refused <= {(202, None), (503, "database-unavailable")}, client.answers
        counts = exactly_once_counts(engine)
        assert counts["holdings"] >= 8, counts
        # Nothing lost, nothing twice: each holding one ledger row under its own event id and
        # one edge in the graph; the queue is empty and nothing was set aside.
        assert set(counts.values()) == {counts["holdings"]}, counts
        assert scalar(engine, "SELECT count(*) FROM message_dead_letters") == 0
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT counter, count FROM sync_counters"))
            counters: dict[str, int] = {str(name): int(count) for name, count in rows}
        # No change was captured twice (a recaptured holding would count as `already_billed`),
        # and every event the CES consumer enqueued was handled once.
        assert not [name for name in counters if name.startswith("already_billed")], counters
        captured = scalar(engine, "SELECT sum(events_total) FROM cdc_checkpoints")
        handled = sum(count for name, count in counters.items() if not name.startswith("delayed"))
        assert handled == captured, (counters, captured)
        # No service ended: each reconnected within its own instance.
        assert {row[1] for row in _heartbeats(engine)} == {"running"}
    finally:
        engine.dispose()
        assert up.stop(signal.SIGTERM) == 0
