"""Three sync workers share the work on either transport and keep each row's order: the final
graph and ledger are those of the rows' last versions, each billable event billed once."""

from __future__ import annotations

import threading

import pytest
from tests.integration.sync.conftest import Source, wait_until
from tests.integration.sync.test_sync_kafka import committed_lag, kafka_settings

from hartonomous.cdc import CesConsumer
from hartonomous.config import Settings
from hartonomous.sync.worker import SyncWorker

JOBS = 6
ROUNDS = 5


@pytest.mark.parametrize("transport", ["postgres", "kafka"])
def test_three_workers_keep_each_rows_order(
    source: Source, transport: str, request: pytest.FixtureRequest
) -> None:
    settings = (
        kafka_settings(request.getfixturevalue("kafka_bootstrap"))
        if transport == "kafka"
        else Settings()
    )
    source.tenant("acme", "alice")
    jobs = [source.ingest("acme", 1, principal_id="alice", tag=f"job{n}-") for n in range(JOBS)]
    # Interleaved updates of the same rows, each its own transaction: job 0, 1, …, 0, 1, …
    for round_ in range(1, ROUNDS + 1):
        for n, job in enumerate(jobs):
            source.conn.execute(
                "UPDATE ingestion_jobs SET file_count = %s WHERE job_id = %s",
                (round_ * 100 + n, job),
            )
    ces = CesConsumer(source.url, settings)
    try:
        events = ces.drain()
    finally:
        ces.close()
    assert events >= JOBS * (ROUNDS + 3)
    stop = threading.Event()
    workers = [SyncWorker(source.url, settings, batch_size=4) for _ in range(3)]
    threads = [threading.Thread(target=worker.run, args=(stop,)) for worker in workers]
    for thread in threads:
        thread.start()
    try:
        if transport == "kafka":
            wait_until(lambda: committed_lag(settings) == 0, "the group commits every record")
        else:
            wait_until(
                lambda: source.scalar("SELECT count(*) FROM broker_messages") == 0,
                "the workers empty the queue",
            )
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    counts = dict(
        source.conn.execute(
            "SELECT (properties->>'file_count')::int, count(*) FROM graph_nodes "
            "WHERE label = 'IngestionJob' GROUP BY 1"
        ).fetchall()
    )
    # Every job node holds its row's last version: no update overtook a later one.
    assert counts == {ROUNDS * 100 + n: 1 for n in range(JOBS)}
    ledger = source.conn.execute(
        "SELECT count(*), count(DISTINCT event_id) FROM billing_usage_ledger"
    ).fetchone()
    assert ledger == (JOBS, JOBS)
    assert source.scalar("SELECT count(*) FROM message_dead_letters") == 0
