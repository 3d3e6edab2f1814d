"""`graph repair` removes orphan rows; a full `graph replay` deletes from Neo4j what is gone."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from neo4j import GraphDatabase
from tests.integration.sync.conftest import Source, drain, neo4j_graph, sql_graph

from hartonomous.config import Settings
from hartonomous.sync.maintenance import repair, replay
from hartonomous.sync.projector import Neo4jProjector


def ingest_with_relation(source: Source, tenant: str) -> None:
    source.tenant(tenant, "alice")
    source.ingest(tenant, 4, principal_id="alice")
    source.relate()


def delete_sources(source: Source) -> None:
    """Remove an atom with its holding (and, by cascade, its relation) and another holding."""
    atom = source.scalar("SELECT from_atom_id FROM atom_relations")
    other = source.scalar(
        "SELECT holding_id FROM holdings WHERE atom_id <> %s "
        "AND atom_id NOT IN (SELECT to_atom_id FROM atom_relations) LIMIT 1",
        atom,
    )
    with source.conn.transaction():
        source.conn.execute(
            "DELETE FROM holdings WHERE atom_id = %s OR holding_id = %s", (atom, other)
        )
        source.conn.execute("DELETE FROM atoms WHERE atom_id = %s", (atom,))


def graph_rows(source: Source) -> str:
    nodes = source.conn.execute(
        "SELECT node_id, label, tenant_id, properties FROM graph_nodes ORDER BY node_id"
    ).fetchall()
    edges = source.conn.execute(
        "SELECT edge_id, from_node_id, to_node_id, properties FROM graph_edges ORDER BY edge_id"
    ).fetchall()
    return json.dumps([nodes, edges], default=str)


def test_repair_removes_graph_rows_whose_source_rows_are_gone(source: Source) -> None:
    ingest_with_relation(source, "acme")
    source.capture()
    assert drain(source, Settings()).dead_lettered == 0
    # The deletes' events never reach the worker (lost): only repair can notice.
    delete_sources(source)
    stale = sql_graph(source.conn)

    report = repair(source.conn, batch_size=2)
    assert report.removed_nodes == 1  # the deleted atom
    assert report.removed_edges == 3  # its holding, its relation and the other holding
    repaired = graph_rows(source)
    assert sql_graph(source.conn) != stale
    # A true rebuild: the same rows as a repair of an empty graph.
    source.conn.execute("TRUNCATE graph_nodes, graph_edges")
    rebuilt = repair(source.conn, batch_size=3)
    assert (rebuilt.removed_nodes, rebuilt.removed_edges) == (0, 0)
    assert graph_rows(source) == repaired
    # Idempotent: nothing removed, no row touched.
    stamp = source.scalar(
        "SELECT greatest((SELECT max(updated_at) FROM graph_nodes), "
        "(SELECT max(updated_at) FROM graph_edges))"
    )
    again = repair(source.conn, batch_size=2)
    assert (again.removed_nodes, again.removed_edges) == (0, 0)
    assert graph_rows(source) == repaired
    assert (
        source.scalar(
            "SELECT greatest((SELECT max(updated_at) FROM graph_nodes), "
            "(SELECT max(updated_at) FROM graph_edges))"
        )
        == stamp
    )


def test_full_replay_deletes_from_neo4j_what_the_sql_graph_no_longer_has(
    source: Source, graph_uri: str
) -> None:
    settings = Settings.model_validate({"neo4j": {"uri": graph_uri}})
    ingest_with_relation(source, "umbrella")
    source.capture()
    assert drain(source, settings).dead_lettered == 0
    assert neo4j_graph(graph_uri) == sql_graph(source.conn)
    # Not ours: another label and relationship type, which no replay may touch.
    foreign = ({"visitor:1", "visitor:2"}, {"LIKES:1"})
    with GraphDatabase.driver(graph_uri, auth=None) as driver:
        driver.execute_query(
            "CREATE (:Visitor {node_id: 'visitor:1'})-[:LIKES {edge_id: 'LIKES:1'}]->"
            "(:Visitor {node_id: 'visitor:2'})"
        )
    try:
        # Deletes processed while the projection is off never reach Neo4j.
        delete_sources(source)
        source.capture()
        assert drain(source, Settings()).dead_lettered == 0
        expected = sql_graph(source.conn)
        stale = neo4j_graph(graph_uri)
        assert stale[0] > expected[0] | foreign[0]
        assert stale[1] > expected[1] | foreign[1]

        projector = Neo4jProjector(settings.neo4j)
        try:
            since = datetime.now(UTC) - timedelta(hours=1)
            incremental = replay(source.conn, projector, since=since)
            assert (incremental.removed_nodes, incremental.removed_edges) == (0, 0)
            assert neo4j_graph(graph_uri) == stale  # --since stays incremental
            full = replay(source.conn, projector, batch_size=2)
            again = replay(source.conn, projector, batch_size=3)
        finally:
            projector.close()
        assert full.removed_nodes == 1
        assert full.removed_edges == 3
        nodes, edges = neo4j_graph(graph_uri)
        assert (nodes, edges) == (expected[0] | foreign[0], expected[1] | foreign[1])
        assert (again.removed_nodes, again.removed_edges) == (0, 0)
        assert neo4j_graph(graph_uri) == (nodes, edges)
    finally:
        with GraphDatabase.driver(graph_uri, auth=None) as driver:
            driver.execute_query("MATCH (n:Visitor) DETACH DELETE n")
