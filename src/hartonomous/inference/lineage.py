"""Lineage: where an atom, model or inference came from (up) and what came from it (down),
walked over the SQL graph (`graph_nodes` / `graph_edges`, docs/sync.md) with one recursive
query (docs/provenance.md, "Lineage").

Each relationship points one way in time. `USED_INPUT`, `USED_MODEL`, `DERIVED_FROM` and a
model's `CONTAINS` (its tensors) point at what their source was made from, so "up" follows
them forward; `PRODUCED`, `GENERATED`, `OWNS`, `REQUESTED` and a composite atom's `CONTAINS`
(a file's text segments came out of the file) point at what their source made or holds, so
"up" follows them backward. "Down" is the reverse of both. Tenants and principals end a path
(reached, never expanded: a tenant owns everything it holds). Only the caller's tenant's
nodes and edges and the shared ones (atoms, models, tensors: no tenant) are followed: a shared
atom used by two tenants shows only the caller's holdings and inferences.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, text

from hartonomous.atoms.read import require_visible
from hartonomous.errors import UsageError
from hartonomous.inference.lookup import parse_inference_id, require_inference
from hartonomous.json_types import JsonValue

__all__ = [
    "DEFAULT_DEPTH",
    "FORWARD_UP",
    "MAX_DEPTH",
    "MAX_NODES",
    "MAX_ROWS",
    "REVERSE_UP",
    "TERMINAL_PREFIXES",
    "Direction",
    "Lineage",
    "LineageEdge",
    "LineageNode",
    "inference_node",
    "resolve_start",
    "walk",
]

Direction = Literal["up", "down"]
DIGEST_BYTES = 32
DEFAULT_DEPTH = 6
MAX_DEPTH = 32
# A walk stops adding nodes past this many (the answer says it was truncated).
MAX_NODES = 10_000
# `REL` for every edge of the type, `REL:Label` only for those whose source node has the label.
FORWARD_UP = ("USED_INPUT", "USED_MODEL", "DERIVED_FROM", "CONTAINS:Model")
REVERSE_UP = ("PRODUCED", "GENERATED", "OWNS", "REQUESTED", "CONTAINS:Atom")
# Tenants and principals end a path; the walk tells them by their ids' prefixes (sync/graph.py),
# with no join.
TERMINAL_PREFIXES = ("tenant", "principal")
# Rows of the walk (one per path step) read at most: past this the answer is truncated.
MAX_ROWS = 50_000


@dataclass(frozen=True)
class LineageNode:
    node_id: str
    label: str
    # Fewest steps from the start (0: the start itself).
    depth: int
    properties: dict[str, JsonValue]


@dataclass(frozen=True)
class LineageEdge:
    edge_id: str
    relationship: str
    from_node_id: str
    to_node_id: str
    properties: dict[str, JsonValue]


@dataclass(frozen=True)
class Lineage:
    start: str
    direction: Direction
    depth: int
    nodes: list[LineageNode]
    edges: list[LineageEdge]
    # More than MAX_NODES nodes were reachable: the answer holds the nearest ones.
    truncated: bool


def resolve_start(connection: Connection, tenant_id: str, identifier: str) -> str:
    """The graph node an identifier names for the tenant: `inference:<tenant>:<uuid>` for an
    inference id, `model:<hex>` for a model's atom id, `atom:<hex>` for any other atom.

    Raises ``InferenceNotFoundError`` / ``AtomNotFoundError`` (the tenant has no such
    inference, or holds nothing containing the atom), ``UsageError`` for anything else.
    """
    inference_id = parse_inference_id(identifier)
    if inference_id is not None:
        require_inference(connection, tenant_id, inference_id)
        return inference_node(tenant_id, inference_id)
    atom_hex = identifier.strip().lower()
    try:
        atom = bytes.fromhex(atom_hex)
    except ValueError:
        atom = b""
    if len(atom) != DIGEST_BYTES:
        raise UsageError(
            f"{identifier!r} is neither an inference id (a UUID) nor an atom or model id "
            "(64 hex characters)"
        )
    require_visible(connection, tenant_id, atom)
    is_model = connection.execute(
        text("SELECT EXISTS (SELECT 1 FROM models WHERE atom_id = :atom)"), {"atom": atom}
    ).scalar_one()
    return f"{'model' if is_model else 'atom'}:{atom_hex}"


# One step from each node reached: forward along `forward` relationships, backward along
# `backward` ones; never from a terminal label, never back onto the path, never past `depth`
# or MAX_NODES rows. Edges and nodes of other tenants are not followed.
_WALK = """
WITH RECURSIVE walk(node_id, depth, path, edge_id) AS (
    SELECT CAST(:start AS text), 0, ARRAY[CAST(:start AS text)], CAST(NULL AS text)
  UNION ALL
    SELECT step.next_id, w.depth + 1, w.path || step.next_id, step.edge_id
    FROM walk w
    CROSS JOIN LATERAL (
        SELECT e.edge_id, e.to_node_id AS next_id FROM graph_edges e
        WHERE e.from_node_id = w.node_id
          AND (e.relationship = ANY(:forward)
               OR e.relationship || ':' || e.from_label = ANY(:forward))
          AND (e.tenant_id IS NULL OR e.tenant_id = :tenant)
        UNION ALL
        SELECT e.edge_id, e.from_node_id FROM graph_edges e
        WHERE e.to_node_id = w.node_id
          AND (e.relationship = ANY(:backward)
               OR e.relationship || ':' || e.from_label = ANY(:backward))
          AND (e.tenant_id IS NULL OR e.tenant_id = :tenant)
    ) step
    LEFT JOIN graph_nodes there ON there.node_id = step.next_id
    WHERE w.depth < :depth
      AND (w.depth = 0 OR split_part(w.node_id, ':', 1) <> ALL(:terminal))
      AND step.next_id <> ALL(w.path)
      AND (there.tenant_id IS NULL OR there.tenant_id = :tenant)
)
SELECT node_id, depth, edge_id FROM walk LIMIT :limit
"""


def walk(
    connection: Connection,
    tenant_id: str,
    start: str,
    direction: Direction,
    depth: int = DEFAULT_DEPTH,
) -> Lineage:
    """Walk ``depth`` steps (1..MAX_DEPTH) up or down from the node ``start`` (see
    ``resolve_start``) over the tenant's part of the SQL graph."""
    forward, backward = (FORWARD_UP, REVERSE_UP) if direction == "up" else (REVERSE_UP, FORWARD_UP)
    rows = connection.execute(
        text(_WALK),
        {
            "start": start,
            "tenant": tenant_id,
            "forward": list(forward),
            "backward": list(backward),
            "terminal": list(TERMINAL_PREFIXES),
            "depth": depth,
            "limit": MAX_ROWS + 1,
        },
    ).all()
    truncated = len(rows) > MAX_ROWS
    rows = rows[:MAX_ROWS]
    nearest: dict[str, int] = {}
    edge_ids: set[str] = set()
    for node_id, steps, edge_id in rows:
        if steps < nearest.get(node_id, steps + 1):
            nearest[node_id] = steps
        if edge_id is not None:
            edge_ids.add(edge_id)
    if len(nearest) > MAX_NODES:
        truncated = True
        kept = sorted(nearest.items(), key=lambda item: (item[1], item[0]))[:MAX_NODES]
        nearest = dict(kept)
    return Lineage(
        start=start,
        direction=direction,
        depth=depth,
        nodes=_nodes(connection, nearest),
        edges=[
            item
            for item in _edges(connection, edge_ids)
            if {item.from_node_id, item.to_node_id} <= nearest.keys()
        ],
        truncated=truncated,
    )


def _nodes(connection: Connection, nearest: dict[str, int]) -> list[LineageNode]:
    found = {
        row.node_id: row
        for row in connection.execute(
            text("SELECT node_id, label, properties FROM graph_nodes WHERE node_id = ANY(:ids)"),
            {"ids": list(nearest)},
        )
    }
    nodes = []
    for node_id, steps in nearest.items():
        row = found.get(node_id)
        # An edge endpoint the graph holds no row for yet (e.g. a model whose event is
        # still queued) is known by its id's prefix only.
        label = row.label if row is not None else _label_of(node_id)
        properties = dict(row.properties) if row is not None else {}
        nodes.append(LineageNode(node_id, label, steps, properties))
    return sorted(nodes, key=lambda n: (n.depth, n.label, n.node_id))


_PREFIX_LABELS = {
    "atom": "Atom",
    "model": "Model",
    "tensor": "Tensor",
    "inference": "Inference",
    "job": "IngestionJob",
    "stream": "GenerationStream",
    "tenant": "Tenant",
    "principal": "Principal",
}


def _label_of(node_id: str) -> str:
    return _PREFIX_LABELS.get(node_id.partition(":")[0], "")


def _edges(connection: Connection, edge_ids: set[str]) -> list[LineageEdge]:
    rows: list[Any] = list(
        connection.execute(
            text(
                "SELECT edge_id, relationship, from_node_id, to_node_id, properties "
                "FROM graph_edges WHERE edge_id = ANY(:ids) ORDER BY edge_id"
            ),
            {"ids": sorted(edge_ids)},
        )
    )
    return [
        LineageEdge(r.edge_id, r.relationship, r.from_node_id, r.to_node_id, dict(r.properties))
        for r in rows
    ]


def inference_node(tenant_id: str, inference_id: uuid.UUID) -> str:
    """The graph id of an inference (as the sync worker writes it)."""
    return f"inference:{tenant_id}:{inference_id}"
