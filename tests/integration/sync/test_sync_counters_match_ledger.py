"""`sync_counters` counts a billed event once, however often it is delivered."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
from tests.integration.sync.conftest import Source, drain, libpq, wait_until

from hartonomous.config import Settings
from hartonomous.messaging.broker import Broker
from hartonomous.messaging.dead_letters import ReplaySelection, replay

BILLED = "billed:neo4j_sync.ingest_completed"
ALREADY = "already_billed:neo4j_sync.ingest_completed"
HANG_GUARD_SECONDS = 120


def counters(source: Source) -> dict[str, int]:
    return dict(source.conn.execute("SELECT counter, count FROM sync_counters").fetchall())


def test_replaying_a_billed_dead_letter_twice_counts_it_once(source: Source) -> None:
    source.tenant("acme")
    source.ingest("acme", 1)
    source.capture()
    banned = Settings.model_validate({"security": {"banned_tenants": ["acme"]}})
    drain(source, banned)
    letter = source.scalar(
        "SELECT dead_letter_id FROM message_dead_letters WHERE body->>'table' = 'holdings'"
    )
    broker = Broker(Settings().message_broker)
    replay(source.conn, broker, ReplaySelection(dead_letter_id=letter))
    replay(source.conn, broker, ReplaySelection(dead_letter_id=letter))
    outcome = drain(source, Settings())
    assert outcome.billed == 1
    assert source.scalar("SELECT count(*) FROM billing_usage_ledger") == 1
    counted = counters(source)
    assert counted[BILLED] == 1
    assert counted[ALREADY] == 1


def waiting_sync_sessions(source: Source) -> int:
    return int(
        source.scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = 'hartonomous-sync' AND wait_event_type = 'Lock'"
        )
    )


def test_a_lapsed_claim_completed_by_two_workers_counts_once(source: Source) -> None:
    source.tenant("acme")
    source.ingest("acme", 1)
    source.capture()
    # Long lock waits here: both workers must be held at the ledger, not time out.
    settings = Settings.model_validate({"database": {"lock_timeout_seconds": 600}})
    outcomes: list[Any] = []
    with psycopg.connect(libpq(source.url)) as blocker:
        blocker.execute("LOCK TABLE billing_usage_ledger IN SHARE MODE")
        first = threading.Thread(target=lambda: outcomes.append(drain(source, settings)))
        first.start()
        wait_until(lambda: waiting_sync_sessions(source) == 1, "the first worker waits")
        # The first worker's claim on the holding lapses while it still works on it.
        source.conn.execute(
            "UPDATE broker_messages SET locked_until = now() - interval '1 second' "
            "WHERE body->>'table' = 'holdings'"
        )
        second = threading.Thread(target=lambda: outcomes.append(drain(source, settings)))
        second.start()
        wait_until(lambda: waiting_sync_sessions(source) == 2, "the second worker waits")
        blocker.commit()
    first.join(HANG_GUARD_SECONDS)
    second.join(HANG_GUARD_SECONDS)
    assert len(outcomes) == 2
    assert sum(outcome.billed for outcome in outcomes) == 1
    assert source.scalar("SELECT count(*) FROM billing_usage_ledger") == 1
    counted = counters(source)
    assert counted[BILLED] == 1
    assert counted[ALREADY] == 1
    assert source.scalar("SELECT count(*) FROM broker_messages") == 0
