"""`graph catch-up` on real PostgreSQL: what the SQL graph and the ledger lack is re-emitted
exactly once, and a second run finds nothing."""

from __future__ import annotations

from typing import Any

import pytest
from neo4j import GraphDatabase
from tests.integration.heartbeats import serving
from tests.integration.sync.conftest import Source, drain, neo4j_graph, sql_graph, wait_until

from hartonomous.cdc.replication import slot_holder
from hartonomous.config import Settings
from hartonomous.messaging.broker import Broker
from hartonomous.sync.catch_up import CaptureBehindError, CaptureWait, catch_up, catch_up_neo4j
from hartonomous.sync.projector import Neo4jProjector


def _graph(source: Source) -> tuple[dict[str, Any], dict[str, Any]]:
    nodes = dict(source.conn.execute("SELECT node_id, properties FROM graph_nodes").fetchall())
    edges = dict(source.conn.execute("SELECT edge_id, properties FROM graph_edges").fetchall())
    return nodes, edges


def _ledger(source: Source) -> list[tuple[Any, ...]]:
    return source.conn.execute(
        "SELECT tenant_id, principal_id, operation, units, total_cost, metadata->>'subject' "
        "FROM billing_usage_ledger ORDER BY metadata->>'subject'"
    ).fetchall()


def _settled(source: Source) -> tuple[dict[str, Any], dict[str, Any], list[tuple[Any, ...]]]:
    source.tenant("acme", "alice")
    source.ingest("acme", 3, principal_id="alice")
    source.relate()
    source.capture()
    outcome = drain(source, Settings())
    assert outcome.billed == 3
    nodes, edges = _graph(source)
    ledger = _ledger(source)
    assert len(ledger) == 3
    assert all(row[5] and row[5].startswith("holdings/acme,") for row in ledger)
    return nodes, edges, ledger


def test_catch_up_after_wiping_the_graph_and_a_ledger_row_restores_them_once(
    source: Source,
) -> None:
    nodes, edges, ledger = _settled(source)
    broker = Broker(Settings().message_broker)
    lost = ledger[1][5]
    source.conn.execute("DELETE FROM graph_edges")
    source.conn.execute("DELETE FROM graph_nodes")
    source.conn.execute("DELETE FROM billing_usage_ledger WHERE metadata->>'subject' = %s", (lost,))

    first = catch_up(source.conn, broker)
    assert first.ledger_gaps == {"holdings": 1}
    assert first.events_emitted == 1
    assert sum(first.graph_gaps.values()) == sum(first.rows.values())
    assert source.scalar("SELECT count(*) FROM broker_messages") == 1
    # Run again before the worker: the event is queued, so it is not emitted twice.
    second = catch_up(source.conn, broker)
    assert (second.events_emitted, second.events_already_queued) == (0, 1)
    assert source.scalar("SELECT count(*) FROM broker_messages") == 1

    outcome = drain(source, Settings())
    assert (outcome.completed, outcome.billed, outcome.dead_lettered) == (1, 1, 0)
    assert _graph(source) == (nodes, edges)
    after = _ledger(source)
    assert [row[:5] for row in after] == [row[:5] for row in ledger]
    assert sorted(row[5] for row in after) == sorted(row[5] for row in ledger)

    third = catch_up(source.conn, broker)
    assert third.graph_gaps == {}
    assert third.ledger_gaps == {}
    assert (third.nodes_written, third.edges_written, third.events_emitted) == (0, 0, 0)


def test_rows_whose_events_are_queued_are_not_gaps_and_are_billed_once(source: Source) -> None:
    """Catch-up beside live capture: captured, unbilled rows are on their way, not lost."""
    source.tenant("acme", "alice")
    source.ingest("acme", 3, principal_id="alice")
    queued = source.capture()
    report = catch_up(source.conn, Broker(Settings().message_broker))
    assert (report.ledger_gaps, report.events_emitted) == ({}, 0)
    assert source.scalar("SELECT count(*) FROM broker_messages") == queued
    assert drain(source, Settings()).billed == 3
    assert source.scalar("SELECT count(*) FROM billing_usage_ledger") == 3


def test_rows_not_yet_captured_wait_for_the_running_consumer_and_are_billed_once(
    source: Source,
) -> None:
    """Committed, still in the WAL, a CES consumer running: catch-up waits for it to enqueue
    them, then finds them queued; nothing is re-emitted."""
    source.tenant("acme", "alice")
    source.capture()
    settings = Settings()
    with serving(source.ces.run):
        # Running: it holds its slot (catch-up asks who does). Under load the thread took its
        # slot after catch-up had asked, and catch-up re-emitted the rows (CI-like run, load 6).
        wait_until(
            lambda: slot_holder(source.conn, settings.cdc.slot_name) is not None,
            "the CES consumer holds its slot",
        )
        source.ingest("acme", 3, principal_id="alice")
        report = catch_up(
            source.conn,
            Broker(settings.message_broker),
            capture=CaptureWait(settings.cdc.slot_name, settings.cdc.consumer_name),
        )
    assert (report.ledger_gaps, report.events_emitted) == ({}, 0)
    assert drain(source, settings).billed == 3
    assert source.scalar("SELECT count(*) FROM billing_usage_ledger") == 3
    again = catch_up(source.conn, Broker(settings.message_broker))
    assert (again.ledger_gaps, again.events_emitted) == ({}, 0)


def test_rows_still_in_the_slot_with_no_consumer_running_are_refused_not_billed_twice(
    source: Source,
) -> None:
    """Committed while no CES consumer runs (`ingest` with `up` stopped): their changes wait in
    the slot and will be billed under their own event ids once captured, so catch-up refuses
    (nothing queued) instead of billing them a second time under its own ids."""
    source.tenant("acme", "alice")
    source.capture()
    source.ces.close()  # the fixture's consumer lets go of its slot: none is running
    source.ingest("acme", 3, principal_id="alice")
    settings = Settings()
    capture = CaptureWait(settings.cdc.slot_name, settings.cdc.consumer_name)
    queued = source.scalar("SELECT count(*) FROM broker_messages")
    with pytest.raises(CaptureBehindError, match=r"row change\(s\) .* no CES consumer is running"):
        catch_up(source.conn, Broker(settings.message_broker), capture=capture)
    assert source.scalar("SELECT count(*) FROM broker_messages") == queued  # none re-emitted
    source.capture()
    assert drain(source, settings).billed == 3
    again = catch_up(source.conn, Broker(settings.message_broker), capture=capture)
    assert (again.ledger_gaps, again.events_emitted) == ({}, 0)
    assert source.scalar("SELECT count(*) FROM billing_usage_ledger") == 3


def test_catch_up_of_a_graph_without_a_ledger_gap_bills_nothing_again(source: Source) -> None:
    nodes, edges, ledger = _settled(source)
    # Stale and missing: one node's properties emptied, the holdings' OWNS edges gone.
    source.conn.execute("UPDATE graph_nodes SET properties = '{}' WHERE node_id LIKE 'job:%%'")
    source.conn.execute("DELETE FROM graph_edges WHERE relationship = 'OWNS'")

    report = catch_up(source.conn, Broker(Settings().message_broker))
    assert report.ledger_gaps == {}
    assert report.events_emitted == 0
    assert report.graph_gaps == {"ingestion_jobs": 1, "holdings": 3, "principals": 1}
    assert source.scalar("SELECT count(*) FROM broker_messages") == 0
    assert _graph(source) == (nodes, edges)
    assert _ledger(source) == ledger
    again = catch_up(source.conn, Broker(Settings().message_broker))
    assert (again.graph_gaps, again.nodes_written, again.edges_written) == ({}, 0, 0)


def test_catch_up_merges_what_an_emptied_neo4j_lacks_and_nothing_more(
    source: Source, graph_uri: str
) -> None:
    settings = Settings.model_validate({"neo4j": {"uri": graph_uri}})
    source.tenant("acme", "alice")
    source.ingest("acme", 2, principal_id="alice")
    source.capture()
    assert drain(source, settings).dead_lettered == 0
    full = neo4j_graph(graph_uri)
    assert full == sql_graph(source.conn)
    # Neo4j restored from an older dump: one job's node and every OWNS relationship are gone.
    with GraphDatabase.driver(graph_uri, auth=None) as driver:
        driver.execute_query("MATCH ()-[r:OWNS]->() DELETE r")
        driver.execute_query("MATCH (n:IngestionJob) DETACH DELETE n")
    lacking = neo4j_graph(graph_uri)
    missing_nodes = len(full[0] - lacking[0])
    missing_edges = len(full[1] - lacking[1])
    assert (missing_nodes, missing_edges) != (0, 0)

    projector = Neo4jProjector(settings.neo4j)
    try:
        report = catch_up_neo4j(source.conn, projector)
        assert (report.nodes_missing, report.edges_missing) == (missing_nodes, missing_edges)
        assert neo4j_graph(graph_uri) == full
        again = catch_up_neo4j(source.conn, projector)
        assert (again.nodes_missing, again.edges_missing) == (0, 0)
    finally:
        projector.close()
