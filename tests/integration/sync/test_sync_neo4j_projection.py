"""Projection into a real Neo4j 5, graph repair and replay after truncation."""

from __future__ import annotations

import json

from tests.integration.sync.conftest import Source, clear_graph, neo4j_graph, sql_graph

from hartonomous.config import Settings
from hartonomous.messaging import OutgoingMessage
from hartonomous.sync.maintenance import repair, replay
from hartonomous.sync.projector import Neo4jProjector
from hartonomous.sync.worker import SyncWorker

UNPROJECTED = (
    "SELECT count(*) FROM graph_nodes WHERE projected_at IS NULL OR projected_at < updated_at"
)


def settings_for(uri: str) -> Settings:
    return Settings.model_validate({"neo4j": {"uri": uri}})


def test_events_are_projected_into_neo4j_and_match_the_sql_graph(
    source: Source, graph_uri: str
) -> None:
    source.tenant("globex", "hank")
    source.ingest("globex", 5, principal_id="hank")
    source.capture()
    queued = source.conn.execute(
        "SELECT body, conversation_id FROM broker_messages ORDER BY message_id"
    ).fetchall()
    worker = SyncWorker(source.url, settings_for(graph_uri))
    try:
        outcome = worker.drain()
    finally:
        worker.close()
    assert outcome.billed == 5
    assert outcome.dead_lettered == 0
    assert neo4j_graph(graph_uri) == sql_graph(source.conn)
    assert source.scalar(UNPROJECTED) == 0
    # Redelivering the same events changes nothing: ids are stable, MERGE is idempotent and
    # the ledger is unique on event id.
    before = neo4j_graph(graph_uri)
    replay_worker = SyncWorker(source.url, settings_for(graph_uri))
    try:
        replay_worker.broker.send_batch(
            source.conn, [OutgoingMessage(body, conversation) for body, conversation in queued]
        )
        again = replay_worker.drain()
    finally:
        replay_worker.close()
    assert again.completed == len(queued)
    assert again.billed == 0
    assert neo4j_graph(graph_uri) == before
    assert source.scalar("SELECT count(*) FROM billing_usage_ledger") == 5


def test_repair_and_replay_restore_a_truncated_graph(source: Source, graph_uri: str) -> None:
    source.tenant("initech", "peter")
    source.ingest("initech", 4, principal_id="peter")
    source.relate()
    source.capture()
    settings = settings_for(graph_uri)
    worker = SyncWorker(source.url, settings)
    try:
        worker.drain()
    finally:
        worker.close()
    expected = sql_graph(source.conn)
    properties = dict(source.conn.execute("SELECT node_id, properties FROM graph_nodes").fetchall())
    assert any(edge.startswith("DERIVED_FROM:") for edge in expected[1])

    source.conn.execute("TRUNCATE graph_nodes, graph_edges")
    clear_graph(graph_uri)
    report = repair(source.conn, batch_size=2)
    assert report.invalid == {}
    assert sql_graph(source.conn) == expected
    repaired = dict(source.conn.execute("SELECT node_id, properties FROM graph_nodes").fetchall())
    assert json.dumps(repaired, sort_keys=True) == json.dumps(properties, sort_keys=True)
    # Repair is idempotent: a second run changes no row.
    stamp = source.scalar("SELECT max(updated_at) FROM graph_nodes")
    repair(source.conn, batch_size=3)
    assert source.scalar("SELECT max(updated_at) FROM graph_nodes") == stamp

    projector = Neo4jProjector(settings.neo4j)
    try:
        first = replay(source.conn, projector, batch_size=3)
        again = replay(source.conn, projector)
    finally:
        projector.close()
    assert first.nodes == len(repaired)
    assert again == first
    assert neo4j_graph(graph_uri) == expected
    assert source.scalar(UNPROJECTED) == 0
