"""Deletes win: a row deleted before its queued events are synced leaves nothing behind."""

from __future__ import annotations

from tests.integration.sync.conftest import Source, drain, neo4j_graph, sql_graph

from hartonomous.config import Settings

ONE_INGEST_AN_HOUR = {
    "name": "ingest-per-tenant",
    "scope": "tenant_operation",
    "operation": "neo4j_sync.ingest_completed",
    "permit_limit": 1,
    "window_seconds": 3600,
}


def release_delayed(source: Source) -> None:
    """What the passing of the throttle window does: the delayed events become available."""
    source.conn.execute("UPDATE broker_messages SET available_at = now()")


def graph_rows_mentioning(source: Source, needle: str) -> int:
    return int(
        source.scalar(
            "SELECT (SELECT count(*) FROM graph_nodes WHERE node_id = %s OR tenant_id = %s) "
            "+ (SELECT count(*) FROM graph_edges WHERE from_node_id = %s OR to_node_id = %s)",
            needle,
            needle.removeprefix("tenant:"),
            needle,
            needle,
        )
    )


def test_a_tenant_deleted_while_its_holdings_are_throttled_leaves_no_node(
    source: Source, graph_uri: str
) -> None:
    source.tenant("gone", "ghost")
    source.tenant("stays")
    source.ingest("gone", 21, principal_id="ghost")
    source.ingest("stays", 1)
    source.capture()
    throttled = Settings.model_validate(
        {"security": {"rate_limits": [ONE_INGEST_AN_HOUR]}, "neo4j": {"uri": graph_uri}}
    )
    first = drain(source, throttled)
    assert first.delayed == 20  # the 21st holding of `gone` and later wait for the window
    assert source.scalar("SELECT count(*) FROM graph_nodes WHERE node_id = 'tenant:gone'") == 1

    source.conn.execute("DELETE FROM tenants WHERE tenant_id = 'gone'")  # cascades
    source.capture()
    # The delete is not throttled: it is synced while the holdings still wait.
    assert drain(source, throttled).completed > 0
    assert source.scalar("SELECT count(*) FROM graph_nodes WHERE node_id = 'tenant:gone'") == 0
    release_delayed(source)
    done = drain(source, Settings.model_validate({"neo4j": {"uri": graph_uri}}))
    assert done.dead_lettered == 0
    assert source.scalar("SELECT count(*) FROM broker_messages") == 0
    assert graph_rows_mentioning(source, "tenant:gone") == 0
    assert graph_rows_mentioning(source, "principal:gone:ghost") == 0
    assert source.scalar("SELECT count(*) FROM graph_nodes WHERE node_id = 'tenant:stays'") == 1
    assert (
        source.scalar(
            "SELECT count FROM sync_counters WHERE counter = %s", "skipped:source_deleted:Tenant"
        )
        > 0
    )
    nodes, edges = neo4j_graph(graph_uri)
    assert "tenant:gone" not in nodes
    assert (nodes, edges) == sql_graph(source.conn)


def test_a_holding_and_atom_deleted_before_the_insert_is_synced_leave_no_atom_node(
    source: Source,
) -> None:
    source.tenant("keep")
    source.ingest("keep", 2)
    source.capture()
    throttled = Settings.model_validate({"security": {"rate_limits": [ONE_INGEST_AN_HOUR]}})
    assert drain(source, throttled).delayed == 1
    holding_id, atom = source.conn.execute(
        "SELECT h.holding_id, h.atom_id FROM holdings h JOIN broker_messages m "
        "ON m.body->>'table' = 'holdings' AND (m.body->'data'->>'holding_id')::uuid = h.holding_id"
    ).fetchone() or (None, None)
    assert holding_id is not None
    # The tenant lets go of the file and gc collects the atom, before the sync catches up.
    source.conn.execute("DELETE FROM holdings WHERE holding_id = %s", (holding_id,))
    source.conn.execute("DELETE FROM atoms WHERE atom_id = %s", (atom,))
    source.capture()
    assert drain(source, throttled).completed > 0  # the atom's delete, not throttled
    assert graph_rows_mentioning(source, f"atom:{atom.hex()}") == 0
    release_delayed(source)
    done = drain(source, Settings())
    assert done.dead_lettered == 0
    assert source.scalar("SELECT count(*) FROM broker_messages") == 0
    assert graph_rows_mentioning(source, f"atom:{atom.hex()}") == 0
    # The other holding's atom and the tenant are untouched.
    assert source.scalar("SELECT count(*) FROM graph_nodes WHERE label = 'Atom'") == 1
    assert (
        source.scalar("SELECT count(*) FROM graph_edges WHERE edge_id LIKE 'OWNS:holding:%%'") == 1
    )
    assert source.scalar("SELECT count(*) FROM graph_nodes WHERE node_id = 'tenant:keep'") == 1
