"""Faults: SIGKILLed workers, an unwritable ledger, Neo4j stopped and restarted mid-run."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest
from tests.conftest import Cli, CliProcess, clean_environment
from tests.integration.sync.conftest import Source, clear_graph, neo4j_graph, sql_graph
from tests.neo4j_server import Neo4jServer

from hartonomous.config import Settings
from hartonomous.sync.worker import SyncWorker

# Every row's figures must be the meter's: DCU and cost rounded half away from zero.
ARITHMETIC_ERRORS = """
SELECT count(*) FROM billing_usage_ledger
WHERE total_dcu <> round(units * base_rate * multiplier, 6)
   OR total_cost <> round(total_dcu * unit_price, 6)
"""
HANG_GUARD_SECONDS = 240
UNPROJECTED = """
SELECT (SELECT count(*) FROM graph_nodes WHERE projected_at IS NULL OR projected_at < updated_at)
     + (SELECT count(*) FROM graph_edges WHERE projected_at IS NULL OR projected_at < updated_at)
"""


def worker_env(database_url: str, data_dir: Path) -> dict[str, str]:
    env = clean_environment()
    env["HARTONOMOUS_DATABASE__URL"] = database_url
    env["HARTONOMOUS_DATA_DIR"] = str(data_dir)
    # Kills return claims as orphans; they must not count towards the poison limit here.
    env["HARTONOMOUS_MESSAGE_BROKER__RESILIENCE__POISON_MESSAGE_MAX_ATTEMPTS"] = "20"
    env["HARTONOMOUS_LOGGING__LEVEL"] = "warning"
    return env


def start_worker(env: dict[str, str], cwd: Path) -> CliProcess:
    return Cli(env, cwd).spawn("sync", "--batch-size", "20")


@pytest.mark.slow
def test_sigkilled_workers_bill_every_event_exactly_once(
    source: Source, database_url: str, data_dir: Path
) -> None:
    """Four rounds of ingestion for three tenants; in each, each of the two workers is
    SIGKILLed once the ledger has grown since the kill before (a batch of the round is being
    billed, the rest still queued or in flight) and restarted. Every holding is then billed
    exactly once, with the meter's arithmetic, and projected once."""
    tenants = ["k1", "k2", "k3"]
    for tenant in tenants:
        source.tenant(tenant, f"{tenant}-user")
    env = worker_env(database_url, data_dir)
    workers = [start_worker(env, data_dir) for _ in range(2)]
    rounds, per_round = 4, 30
    kills = 0

    def billed() -> int:
        return int(source.scalar("SELECT count(*) FROM billing_usage_ledger"))

    try:
        for round_ in range(rounds):
            for tenant in tenants:
                source.ingest(tenant, per_round, tag=f"r{round_}-")
            source.capture()
            round_end = (round_ + 1) * len(tenants) * per_round
            level = billed()
            for victim in range(len(workers)):
                # A kill on progress, not on a timer; a round already billed in full (the
                # survivor finished it) still has its kill, of an idle worker.
                wait_until(
                    lambda level=level, end=round_end: billed() > level or billed() == end,
                    f"round {round_}: billing progresses before kill {kills + 1}",
                )
                level = billed()
                workers[victim].send_signal(signal.SIGKILL)
                workers[victim].wait()
                kills += 1
                workers[victim] = start_worker(env, data_dir)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGKILL)
            worker.wait()
    finish = Cli(env, data_dir)("--json", "sync", "--once")
    assert finish.exit_code == 0, finish.stderr

    holdings = len(tenants) * rounds * per_round
    assert kills == rounds * len(workers)
    assert source.scalar("SELECT count(*) FROM holdings") == holdings
    assert source.scalar("SELECT count(*) FROM billing_usage_ledger") == holdings
    assert source.scalar("SELECT count(DISTINCT event_id) FROM billing_usage_ledger") == holdings
    assert source.scalar(ARITHMETIC_ERRORS) == 0
    assert source.scalar("SELECT count(*) FROM message_dead_letters") == 0
    assert source.scalar("SELECT count(*) FROM broker_messages") == 0
    # Every billed holding is in the SQL graph, exactly once.
    assert (
        source.scalar("SELECT count(*) FROM graph_edges WHERE edge_id LIKE 'OWNS:holding:%%'")
        == holdings
    )


def test_an_unwritable_ledger_stops_the_worker_and_loses_nothing(source: Source, cli: Cli) -> None:
    source.tenant("acme")
    source.ingest("acme", 3)
    queued = source.capture()
    source.conn.execute(
        "ALTER TABLE billing_usage_ledger ADD CONSTRAINT frozen CHECK (false) NOT VALID"
    )
    stopped = cli("sync", "--once")
    assert stopped.exit_code == 1
    assert "sync stopped: the usage ledger cannot be written" in stopped.stderr
    assert "frozen" in stopped.stderr
    assert source.scalar("SELECT count(*) FROM message_dead_letters") == 0
    assert source.scalar("SELECT count(*) FROM broker_messages") == queued
    assert source.scalar("SELECT max(attempts) FROM broker_messages") == 0
    assert source.scalar("SELECT count(*) FROM graph_nodes") == 0

    source.conn.execute("ALTER TABLE billing_usage_ledger DROP CONSTRAINT frozen")
    resumed = cli("sync", "--once")
    assert resumed.exit_code == 0, resumed.stderr
    assert source.scalar("SELECT count(*) FROM billing_usage_ledger") == 3
    assert source.scalar("SELECT count(*) FROM broker_messages") == 0


def wait_until(condition: object, what: str) -> None:
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"hang guard: {what} did not happen")
        time.sleep(0.2)


@pytest.mark.slow
def test_neo4j_stopped_and_restarted_mid_run_loses_nothing(
    source: Source, neo4j_server: Neo4jServer
) -> None:
    # The session's server; restarted, it keeps its data (its data directory), as a real
    # Neo4j does.
    server, uri = neo4j_server, neo4j_server.uri
    clear_graph(uri)
    settings = Settings.model_validate(
        {
            "neo4j": {"uri": uri, "connection_timeout_seconds": 2},
            "message_broker": {
                "resilience": {
                    "publish_max_attempts": 2,
                    "publish_base_delay_seconds": 0.05,
                    "publish_max_delay_seconds": 0.1,
                    "circuit_breaker_failure_threshold": 2,
                    "circuit_breaker_break_duration_seconds": 1,
                }
            },
        }
    )
    source.tenant("neo", "trinity")
    worker = SyncWorker(source.url, settings, batch_size=20)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    try:
        source.ingest("neo", 40, principal_id="trinity", tag="before-")
        source.capture()
        wait_until(lambda: source.scalar("SELECT count(*) FROM broker_messages") == 0, "drain")
        server.stop()
        source.ingest("neo", 40, principal_id="trinity", tag="during-")
        source.capture()
        wait_until(lambda: worker.neo4j_breaker.state.value != "closed", "breaker opens")
        assert source.scalar("SELECT count(*) FROM broker_messages") > 0
        assert source.scalar("SELECT count(*) FROM message_dead_letters") == 0
        server.restart()
        wait_until(lambda: source.scalar("SELECT count(*) FROM broker_messages") == 0, "catch up")
    finally:
        stop.set()
        thread.join(HANG_GUARD_SECONDS)
        if server.process.poll() is not None:  # failed mid-outage: later tests need it back
            server.restart()
    try:
        assert source.scalar("SELECT count(*) FROM message_dead_letters") == 0
        assert source.scalar("SELECT count(*) FROM billing_usage_ledger") == 80
        assert source.scalar(ARITHMETIC_ERRORS) == 0
        _, edges = neo4j_graph(uri)
        during = {
            r[0]
            for r in source.conn.execute(
                "SELECT edge_id FROM graph_edges g JOIN holdings h "
                "ON g.edge_id = 'OWNS:holding:neo:' || h.holding_id "
                "WHERE h.source_uri LIKE '%%during-%%'"
            ).fetchall()
        }
        assert len(during) == 40
        assert during <= edges  # what waited during the outage was projected afterwards
        # Converged by itself: no replay, and every SQL graph row is marked projected.
        assert neo4j_graph(uri) == sql_graph(source.conn)
        assert source.scalar(UNPROJECTED) == 0
    finally:
        clear_graph(uri)
