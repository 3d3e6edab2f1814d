"""Bounded waits: sessions of the sync worker and the CES consumer carry the configured
statement and lock timeouts; a timeout is logged and retried with backoff, and work goes on."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from structlog.testing import capture_logs
from tests.integration.sync.conftest import Source, libpq, wait_until

from hartonomous.cdc import CesConsumer
from hartonomous.config import Settings
from hartonomous.sync.worker import SyncWorker

HANG_GUARD_SECONDS = 120
SETTINGS = Settings.model_validate(
    {
        "database": {"command_timeout_seconds": 7, "lock_timeout_seconds": 0.2},
        "message_broker": {"receive_wait_timeout_seconds": 0.25},
    }
)


@contextmanager
def running(worker: SyncWorker) -> Iterator[None]:
    """The worker serving in a thread (as under `up`) for the duration of the block."""
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(HANG_GUARD_SECONDS)


def pending(source: Source) -> int:
    return int(source.scalar("SELECT count(*) FROM broker_messages"))


def lock_timeouts(logs: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [e for e in list(logs) if e["event"] == event and "LockNotAvailable" in e["error"]]


def test_every_session_has_the_configured_timeouts(source: Source) -> None:
    worker = SyncWorker(source.url, SETTINGS)
    consumer = CesConsumer(source.url, SETTINGS)
    try:
        sessions = [worker.connection(), consumer.connection()]
        for session in sessions:
            assert session.execute("SHOW statement_timeout").fetchone() == ("7s",)
            assert session.execute("SHOW lock_timeout").fetchone() == ("200ms",)
        names = {"hartonomous-sync", "hartonomous-ces-consumer"}
        rows = source.conn.execute(
            "SELECT application_name FROM pg_stat_activity WHERE datname = current_database()"
        ).fetchall()
        assert names <= {name for (name,) in rows}
    finally:
        worker.close()
        consumer.close()


def test_a_locked_rate_plan_table_times_out_is_logged_retried_and_proceeds(
    source: Source,
) -> None:
    source.tenant("acme")
    source.ingest("acme", 3)
    source.capture()
    worker = SyncWorker(source.url, SETTINGS)
    with (
        capture_logs() as logs,
        psycopg.connect(libpq(source.url)) as blocker,
    ):
        blocker.execute("LOCK TABLE billing_rate_plans IN ACCESS EXCLUSIVE MODE")
        with running(worker):
            # The billed holdings wait (logged, retried); the unrelated events go through.
            retried = lambda: lock_timeouts(logs, "sync_message_retrying")  # noqa: E731
            wait_until(lambda: any(e["failures"] > 1 for e in retried()), "a second retry")
            wait_until(lambda: pending(source) == 3, "unrelated events completed")
            assert source.scalar("SELECT count(*) FROM graph_nodes WHERE label = 'Atom'") == 3
            assert source.scalar("SELECT count(*) FROM billing_usage_ledger") == 0
            blocker.commit()  # the lock is released
            wait_until(lambda: pending(source) == 0, "drained")
    assert source.scalar("SELECT count(*) FROM billing_usage_ledger") == 3
    assert source.scalar("SELECT count(*) FROM message_dead_letters") == 0
    # The backoff grows with a message's consecutive failures (computed waits, not timings).
    retries = lock_timeouts(logs, "sync_message_retrying")
    first = min(e["wait_seconds"] for e in retries if e["failures"] == 1)
    second = max(e["wait_seconds"] for e in retries if e["failures"] == 2)
    assert second > first


def test_a_locked_checkpoint_times_out_the_ces_consumer_which_retries_and_proceeds(
    source: Source,
) -> None:
    source.tenant("acme")
    consumer = CesConsumer(source.url, SETTINGS)
    captured: list[int] = []
    try:
        with capture_logs() as logs, psycopg.connect(libpq(source.url)) as blocker:
            blocker.execute("LOCK TABLE cdc_checkpoints IN ACCESS EXCLUSIVE MODE")
            thread = threading.Thread(target=lambda: captured.append(consumer.drain()))
            thread.start()
            wait_until(lambda: lock_timeouts(logs, "transient_failure_retrying"), "a retry")
            blocker.commit()
            thread.join(HANG_GUARD_SECONDS)
    finally:
        consumer.close()
    assert captured == [1]  # the tenant insert, enqueued once the lock was released
    assert source.scalar("SELECT count(*) FROM broker_messages") == captured[0]


def test_a_locked_graph_table_holds_the_batch_uncounted_until_it_is_released(
    source: Source,
) -> None:
    source.tenant("acme")
    source.ingest("acme", 3)
    queued = source.capture()
    worker = SyncWorker(source.url, SETTINGS)
    limit = SETTINGS.message_broker.resilience.poison_message_max_attempts
    with capture_logs() as logs, psycopg.connect(libpq(source.url)) as blocker:
        blocker.execute("LOCK TABLE graph_edges IN SHARE MODE")  # no batch can write edges
        with running(worker):
            # More timeouts of one message than the poison limit: they must not count as failed
            # attempts (the batch's timeout isolates its messages, each retried uncounted).
            retried = lambda: lock_timeouts(logs, "sync_message_retrying")  # noqa: E731
            wait_until(lambda: any(e["failures"] > limit for e in retried()), "retries")
            assert 0 < pending(source) <= queued
            assert source.scalar("SELECT count(*) FROM message_dead_letters") == 0
            blocker.commit()
            wait_until(lambda: pending(source) == 0, "drained")
    assert source.scalar("SELECT count(*) FROM message_dead_letters") == 0
    assert source.scalar("SELECT count(*) FROM billing_usage_ledger") == 3


# A lock timeout far longer than the receive backoff (as with the defaults: 10 s vs 0.5-15 s):
# a timed-out message must not come back as the lowest claimable id and hold the others.
LONG_LOCK_SETTINGS = Settings.model_validate(
    {
        "database": {"command_timeout_seconds": 7, "lock_timeout_seconds": 1},
        "message_broker": {
            "receive_wait_timeout_seconds": 0.25,
            "resilience": {"receive_base_delay_seconds": 0.1, "receive_max_delay_seconds": 0.2},
        },
    }
)


def tenant_nodes(source: Source, prefix: str) -> int:
    return int(
        source.scalar(
            "SELECT count(*) FROM graph_nodes WHERE label = 'Tenant' AND node_id LIKE %s",
            f"tenant:{prefix}%",
        )
    )


def test_a_billed_event_waiting_for_a_locked_rate_plan_does_not_hold_unrelated_events(
    source: Source,
) -> None:
    source.tenant("lk2")
    source.capture()
    worker = SyncWorker(source.url, LONG_LOCK_SETTINGS)
    with capture_logs() as logs, psycopg.connect(libpq(source.url)) as blocker, running(worker):
        wait_until(lambda: pending(source) == 0, "the tenant synced")
        blocker.execute("LOCK TABLE billing_rate_plans IN ACCESS EXCLUSIVE MODE")
        source.ingest("lk2", 1)  # billed: its decision needs the rate plan
        source.conn.execute("UPDATE holdings SET metadata = '{\"n\": 9}' WHERE tenant_id = 'lk2'")
        source.conn.execute(
            "INSERT INTO tenants (tenant_id, display_name) "
            "SELECT 'unr3_' || g, 'u' FROM generate_series(1, 5) g"
        )
        source.capture()
        # While the lock is held: the unrelated tenants reach the graph, nothing is billed,
        # and the holding's update waits behind its insert (same conversation).
        wait_until(lambda: tenant_nodes(source, "unr3_") == 5, "unrelated events synced")
        wait_until(lambda: lock_timeouts(logs, "sync_message_retrying"), "the holding timed out")
        assert source.scalar("SELECT count(*) FROM billing_usage_ledger") == 0
        holding_events = (
            "SELECT count(*) FROM broker_messages WHERE conversation_id LIKE 'holdings:%%'"
        )
        assert source.scalar(holding_events) == 2
        blocker.commit()  # the lock is released
        wait_until(lambda: pending(source) == 0, "drained")
    assert source.scalar("SELECT count(*) FROM billing_usage_ledger") == 1
    assert source.scalar("SELECT count(*) FROM sync_counters WHERE counter LIKE 'billed:%%'") == 1
    assert source.scalar("SELECT sum(count) FROM sync_counters WHERE counter LIKE 'billed:%%'") == 1
    assert source.scalar("SELECT count(*) FROM message_dead_letters") == 0
    # Each wait is at least the lock timeout (computed waits, not timings).
    retries = lock_timeouts(logs, "sync_message_retrying")
    assert min(e["wait_seconds"] for e in retries) >= 1


def test_a_row_locked_elsewhere_holds_only_the_events_that_write_it(source: Source) -> None:
    source.tenant("lk4", "p4")
    source.conn.execute(
        "INSERT INTO tenants (tenant_id, display_name) "
        "SELECT 'unr4_' || g, 'u' FROM generate_series(1, 5) g"
    )
    worker = SyncWorker(source.url, LONG_LOCK_SETTINGS)
    principal = "SELECT count(*) FROM graph_nodes WHERE label = 'Principal'"
    with capture_logs() as logs, psycopg.connect(libpq(source.url)) as blocker:
        # A batch's effects lock the source rows of its nodes FOR KEY SHARE (deletes win,
        # docs/sync.md): a FOR UPDATE held elsewhere times out the effects of lk4's events.
        blocker.execute("SELECT 1 FROM tenants WHERE tenant_id = 'lk4' FOR UPDATE")
        source.capture()
        with running(worker):
            wait_until(lambda: tenant_nodes(source, "unr4_") == 5, "unrelated events synced")
            wait_until(lambda: lock_timeouts(logs, "sync_message_retrying"), "lk4 timed out")
            assert source.scalar(principal) == 0
            assert tenant_nodes(source, "lk4") == 0
            blocker.commit()
            wait_until(lambda: pending(source) == 0, "drained")
    assert source.scalar(principal) == 1
    assert tenant_nodes(source, "lk4") == 1
    assert source.scalar("SELECT count(*) FROM message_dead_letters") == 0
