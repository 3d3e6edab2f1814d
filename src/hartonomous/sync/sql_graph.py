"""The SQL graph writer: `graph_nodes` / `graph_edges` upserts and deletes, set-based per batch.

Rows are written in key order, so concurrent workers lock shared rows in one order (no
deadlock). Upserts merge properties over what is stored (a placeholder Atom node written for
an edge never wipes the full node) and only touch rows that change, unless the batch was
projected into Neo4j, in which case every row written is marked projected.

Every array parameter travels in PostgreSQL's binary array format (`%(name)b`): the text
format escapes each element (every quote of every properties JSON) with a regular expression,
the largest Python cost of the upserts; the properties go as `text[]` cast to `jsonb[]`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg

from hartonomous.json_types import exact_dumps
from hartonomous.sync.graph import GraphBatch, GraphSegment, NodeRef

Connection = psycopg.Connection[Any]

_UPSERT_NODES = """
INSERT INTO graph_nodes AS g (node_id, label, tenant_id, properties, source_event_id,
                              updated_at, projected_at)
SELECT u.node_id, u.label, u.tenant_id, u.properties, u.event_id, now(),
       CASE WHEN %(projected)s THEN now() END
FROM unnest(%(ids)b::text[], %(labels)b::text[], %(tenants)b::text[],
            %(properties)b::text[]::jsonb[], %(events)b::text[])
     AS u(node_id, label, tenant_id, properties, event_id)
ON CONFLICT (node_id) DO UPDATE SET
    label = excluded.label,
    tenant_id = coalesce(excluded.tenant_id, g.tenant_id),
    properties = g.properties || excluded.properties,
    source_event_id = coalesce(excluded.source_event_id, g.source_event_id),
    updated_at = now(),
    projected_at = CASE WHEN %(projected)s THEN now() ELSE g.projected_at END
WHERE %(projected)s
   OR g.label IS DISTINCT FROM excluded.label
   OR g.properties IS DISTINCT FROM g.properties || excluded.properties
   OR (excluded.tenant_id IS NOT NULL AND g.tenant_id IS DISTINCT FROM excluded.tenant_id)
"""

_UPSERT_EDGES = """
INSERT INTO graph_edges AS g (edge_id, relationship, from_node_id, from_label, to_node_id,
                              to_label, tenant_id, properties, source_event_id, updated_at,
                              projected_at)
SELECT u.edge_id, u.relationship, u.from_id, u.from_label, u.to_id, u.to_label, u.tenant_id,
       u.properties, u.event_id, now(), CASE WHEN %(projected)s THEN now() END
FROM unnest(%(ids)b::text[], %(relationships)b::text[], %(from_ids)b::text[],
            %(from_labels)b::text[], %(to_ids)b::text[], %(to_labels)b::text[],
            %(tenants)b::text[], %(properties)b::text[]::jsonb[], %(events)b::text[])
     AS u(edge_id, relationship, from_id, from_label, to_id, to_label, tenant_id, properties,
          event_id)
ON CONFLICT (edge_id) DO UPDATE SET
    relationship = excluded.relationship,
    from_node_id = excluded.from_node_id,
    from_label = excluded.from_label,
    to_node_id = excluded.to_node_id,
    to_label = excluded.to_label,
    tenant_id = coalesce(excluded.tenant_id, g.tenant_id),
    properties = g.properties || excluded.properties,
    source_event_id = coalesce(excluded.source_event_id, g.source_event_id),
    updated_at = now(),
    projected_at = CASE WHEN %(projected)s THEN now() ELSE g.projected_at END
WHERE %(projected)s
   OR g.to_node_id IS DISTINCT FROM excluded.to_node_id
   OR g.from_node_id IS DISTINCT FROM excluded.from_node_id
   OR g.properties IS DISTINCT FROM g.properties || excluded.properties
"""


# (class, object) of the transaction-level advisory lock that orders the projection: a
# projecting worker batch holds it shared, a replay page exclusively. So a replay page never
# reads the SQL graph between a batch's Neo4j write and its commit (it would see Neo4j ahead of
# SQL and delete or overwrite what the batch is about to commit).
_PROJECTION_LOCK = (0x48617274, 0x47726170)


def lock_projection(connection: Connection, *, exclusive: bool) -> None:
    """Take the projection lock until the end of the current transaction."""
    function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    connection.execute(f"SELECT {function}(%s, %s)", _PROJECTION_LOCK)


def _json(value: object) -> str:
    # Exact: a Decimal from the event data is written as the same JSON number.
    return exact_dumps(value, default=str)


def write_batch(connection: Connection, batch: GraphBatch, *, projected: bool) -> None:
    for segment in batch.segments:
        write_segment(connection, segment, projected=projected)


def write_segment(connection: Connection, segment: GraphSegment, *, projected: bool) -> None:
    """Delete, then upsert the segment's nodes and edges. Rows are written in key order
    (`node_id`, `edge_id`): workers writing overlapping batches at once lock the rows they
    share in the same order, so they wait for each other instead of deadlocking."""
    delete_nodes(connection, segment.deleted_nodes)
    if segment.deleted_edges:
        connection.execute(
            "DELETE FROM graph_edges WHERE edge_id = ANY(%s)", (sorted(segment.deleted_edges),)
        )
    if segment.nodes:
        nodes = [segment.nodes[key] for key in sorted(segment.nodes)]
        connection.execute(
            _UPSERT_NODES,
            {
                "projected": projected,
                "ids": [node.ref.node_id for node, _ in nodes],
                "labels": [node.ref.label for node, _ in nodes],
                "tenants": [node.tenant_id for node, _ in nodes],
                "properties": [_json(node.properties) for node, _ in nodes],
                "events": [event for _, event in nodes],
            },
        )
    if segment.edges:
        edges = [segment.edges[key] for key in sorted(segment.edges)]
        connection.execute(
            _UPSERT_EDGES,
            {
                "projected": projected,
                "ids": [item.edge_id for item, _ in edges],
                "relationships": [item.relationship for item, _ in edges],
                "from_ids": [item.source.node_id for item, _ in edges],
                "from_labels": [item.source.label for item, _ in edges],
                "to_ids": [item.target.node_id for item, _ in edges],
                "to_labels": [item.target.label for item, _ in edges],
                "tenants": [item.tenant_id for item, _ in edges],
                "properties": [_json(item.properties) for item, _ in edges],
                "events": [event for _, event in edges],
            },
        )


def delete_nodes(connection: Connection, refs: Iterable[NodeRef]) -> None:
    """Delete the nodes and every edge touching them (ids in order, as `write_segment`)."""
    ids = sorted({ref.node_id for ref in refs})
    if not ids:
        return
    connection.execute(
        "DELETE FROM graph_edges WHERE from_node_id = ANY(%(ids)s) OR to_node_id = ANY(%(ids)s)",
        {"ids": ids},
    )
    connection.execute("DELETE FROM graph_nodes WHERE node_id = ANY(%s)", (ids,))
