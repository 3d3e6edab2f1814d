"""The sync worker on real PostgreSQL with real CDC events: graph, ledger, counters."""

from __future__ import annotations

from decimal import Decimal

from tests.integration.sync.conftest import Source

from hartonomous.config import Settings
from hartonomous.sync.worker import SyncWorker


def test_ingested_holdings_are_billed_once_and_projected_into_the_sql_graph(
    source: Source,
) -> None:
    source.tenant("acme", "alice")
    job_id = source.ingest("acme", 3, principal_id="alice")
    source.capture()
    worker = SyncWorker(source.url, Settings())
    try:
        outcome = worker.drain()
    finally:
        worker.close()
    assert outcome.dead_lettered == 0
    assert outcome.billed == 3
    rows = source.conn.execute(
        "SELECT tenant_id, principal_id, operation, handler, units, base_rate, multiplier, "
        "total_dcu, unit_price, total_cost, message_type FROM billing_usage_ledger"
    ).fetchall()
    assert len(rows) == 3
    for row in rows:
        assert row[:4] == ("acme", "alice", "neo4j_sync.ingest_completed", "atoms")
        assert row[4:10] == (
            Decimal("1.000000"),
            Decimal("0.018000"),
            Decimal("1.000000"),
            Decimal("0.018000"),
            Decimal("0.000080"),
            Decimal("0.000001"),
        )
        assert row[10] == "io.hartonomous.cdc.holdings.insert"
    assert source.scalar("SELECT count(*) FROM broker_messages") == 0
    labels = dict(
        source.conn.execute("SELECT label, count(*) FROM graph_nodes GROUP BY label").fetchall()
    )
    assert labels == {"Atom": 3, "Tenant": 1, "Principal": 1, "IngestionJob": 1}
    relationships = dict(
        source.conn.execute(
            "SELECT relationship, count(*) FROM graph_edges GROUP BY relationship"
        ).fetchall()
    )
    assert relationships == {"OWNS": 5, "REQUESTED": 1}
    job = source.scalar(
        "SELECT properties FROM graph_nodes WHERE node_id = %s", f"job:acme:{job_id}"
    )
    assert job["status"] == "completed"
    counters = dict(source.conn.execute("SELECT counter, count FROM sync_counters").fetchall())
    assert counters["billed:neo4j_sync.ingest_completed"] == 3
    assert counters["unbilled:atoms.insert"] == 3
