"""Three `hartonomous sync` processes share the work on either transport and keep each row's
order: the graph and ledger they write equal those of one worker handling the same events."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient
from tests.conftest import Cli
from tests.integration.sync.conftest import Source, wait_until
from tests.integration.sync.test_sync_faults import worker_env
from tests.integration.sync.test_sync_kafka import committed_lag, kafka_env, kafka_settings

from hartonomous.cdc import CesConsumer
from hartonomous.config import Settings

JOBS = 6
ROUNDS = 5
# What the effects are compared on: everything but when they were written and by which
# event (a node written by events of two rows, such as an atom by its row's and its
# holding's, keeps whichever came last; only one row's events have an order).
EFFECTS = {
    "graph_nodes": "node_id, label, tenant_id, properties",
    "graph_edges": "edge_id, relationship, from_node_id, to_node_id, tenant_id, properties",
    "billing_usage_ledger": "event_id, tenant_id, principal_id, operation, units, total_cost",
}


def effects(source: Source) -> dict[str, list[tuple[Any, ...]]]:
    return {
        table: source.conn.execute(f"SELECT {columns} FROM {table} ORDER BY 1").fetchall()
        for table, columns in EFFECTS.items()
    }


def group_shares(settings: Settings) -> list[list[int]]:
    """The partitions of each member of the sync workers' consumer group."""
    kafka = settings.message_broker.kafka
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers})
    group = admin.describe_consumer_groups([kafka.consumer_group])[kafka.consumer_group]
    return [
        sorted(tp.partition for tp in member.assignment.topic_partitions)
        for member in group.result(timeout=30).members
    ]


def run_workers(
    cli: Cli,
    count: int,
    done: Callable[[], bool],
    shares: Callable[[], list[list[int]]] | None,
) -> list[int]:
    """Serve with ``count`` `sync` processes until ``done``, then SIGTERM them; their exit
    codes. With ``shares`` (Kafka), also until each member holds one partition."""
    workers = [cli.spawn("sync", "--batch-size", "4", stdout=subprocess.PIPE) for _ in range(count)]
    try:
        for worker in workers:  # each serves (and stops on SIGTERM) once it said so
            assert worker.stdout is not None
            assert worker.stdout.readline().startswith("sync running")
        wait_until(done, "the workers handle every event")
        if shares is not None:
            wait_until(lambda: sorted(shares()) == [[p] for p in range(count)], "one each")
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        exits = [worker.wait() for worker in workers]
        for worker in workers:
            if worker.stdout is not None:
                worker.stdout.close()
    return exits


def clear_effects(source: Source) -> None:
    source.conn.execute("TRUNCATE graph_nodes, graph_edges, billing_usage_ledger, sync_counters")


@pytest.mark.parametrize("transport", ["postgres", "kafka"])
def test_three_worker_processes_keep_each_rows_order(
    source: Source,
    database_url: str,
    data_dir: Path,
    transport: str,
    request: pytest.FixtureRequest,
) -> None:
    settings = (
        kafka_settings(request.getfixturevalue("kafka_bootstrap"))
        if transport == "kafka"
        else Settings()
    )
    env = worker_env(database_url, data_dir)
    if transport == "kafka":
        env |= kafka_env(settings)
    cli = Cli(env, data_dir)
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
    if transport == "postgres":  # kept to hand the same events to one worker afterwards
        source.conn.execute("CREATE TABLE sent AS SELECT * FROM broker_messages")

    def done() -> bool:
        if transport == "kafka":
            return committed_lag(settings) == 0
        return source.scalar("SELECT count(*) FROM broker_messages") == 0

    shares = (lambda: group_shares(settings)) if transport == "kafka" else None
    exits = run_workers(cli, 3, done, shares)
    assert exits == [0, 0, 0]
    shared = effects(source)
    counts = dict(
        source.conn.execute(
            "SELECT (properties->>'file_count')::int, count(*) FROM graph_nodes "
            "WHERE label = 'IngestionJob' GROUP BY 1"
        ).fetchall()
    )
    # Every job node holds its row's last version: no update overtook a later one.
    assert counts == {ROUNDS * 100 + n: 1 for n in range(JOBS)}
    assert len(shared["billing_usage_ledger"]) == JOBS
    assert source.scalar("SELECT count(*) FROM message_dead_letters") == 0

    # The same events again, to one worker, on empty effects: the same graph and ledger.
    clear_effects(source)
    if transport == "kafka":
        kafka = settings.message_broker.kafka
        cli = Cli(
            env | {"HARTONOMOUS_MESSAGE_BROKER__KAFKA__CONSUMER_GROUP": f"{kafka.topic}-one"},
            data_dir,
        )
    else:
        source.conn.execute("INSERT INTO broker_messages SELECT * FROM sent")
    alone = cli("--json", "sync", "--once", "--batch-size", "4")
    assert alone.exit_code == 0, alone.stderr
    assert effects(source) == shared
