"""Graph changes as plain values: nodes, edges and deletions keyed by stable ids (docs/sync.md).

A handler turns one event into a `GraphChange`; the SQL graph writer and the Neo4j projector
apply the same changes in the same order, so both stores hold the same graph.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

from hartonomous.json_types import JsonValue

Label = Literal[
    "Atom",
    "Model",
    "Tensor",
    "Inference",
    "IngestionJob",
    "GenerationStream",
    "Tenant",
    "Principal",
]
Relationship = Literal[
    "CONTAINS",
    "DERIVED_FROM",
    "PRODUCED",
    "USED_MODEL",
    "USED_INPUT",
    "GENERATED",
    "REQUESTED",
    "OWNS",
]
LABELS: tuple[Label, ...] = get_args(Label)
RELATIONSHIPS: tuple[Relationship, ...] = get_args(Relationship)

Properties = Mapping[str, JsonValue]


@dataclass(frozen=True)
class NodeRef:
    node_id: str
    label: Label
    # The source row's key (e.g. (tenant, principal)), as the ref constructors below set it:
    # the sync worker checks the row still exists before it writes the node (deletes win).
    key: tuple[str | int, ...] = field(default=(), compare=False)


def atom_ref(atom_hex: str) -> NodeRef:
    return NodeRef(f"atom:{atom_hex}", "Atom", (atom_hex,))


def model_ref(atom_hex: str) -> NodeRef:
    return NodeRef(f"model:{atom_hex}", "Model", (atom_hex,))


def tensor_ref(model_hex: str, ordinal: int) -> NodeRef:
    return NodeRef(f"tensor:{model_hex}:{ordinal}", "Tensor", (model_hex, ordinal))


def tenant_ref(tenant_id: str) -> NodeRef:
    return NodeRef(f"tenant:{tenant_id}", "Tenant", (tenant_id,))


def principal_ref(tenant_id: str, principal_id: str) -> NodeRef:
    return NodeRef(f"principal:{tenant_id}:{principal_id}", "Principal", (tenant_id, principal_id))


def job_ref(tenant_id: str, job_id: str) -> NodeRef:
    return NodeRef(f"job:{tenant_id}:{job_id}", "IngestionJob", (tenant_id, job_id))


def inference_ref(tenant_id: str, inference_id: str) -> NodeRef:
    return NodeRef(f"inference:{tenant_id}:{inference_id}", "Inference", (tenant_id, inference_id))


def stream_ref(tenant_id: str, stream_id: str) -> NodeRef:
    return NodeRef(f"stream:{tenant_id}:{stream_id}", "GenerationStream", (tenant_id, stream_id))


@dataclass(frozen=True)
class GraphNode:
    ref: NodeRef
    tenant_id: str | None
    properties: Properties


@dataclass(frozen=True)
class GraphEdge:
    edge_id: str
    relationship: Relationship
    source: NodeRef
    target: NodeRef
    tenant_id: str | None
    properties: Properties


def edge(
    relationship: Relationship,
    source: NodeRef,
    target: NodeRef,
    *,
    tenant_id: str | None = None,
    key: str = "",
    edge_id: str = "",
    properties: Properties | None = None,
) -> GraphEdge:
    """An edge whose id is its relationship, endpoints and an optional key (e.g. an ordinal).

    Rows whose delete events carry only their primary key pass `edge_id` built from that key,
    so the delete can name the edge without knowing its target.
    """
    if not edge_id:
        edge_id = f"{relationship}:{source.node_id}>{target.node_id}"
        if key:
            edge_id += f"#{key}"
    return GraphEdge(edge_id, relationship, source, target, tenant_id, properties or {})


@dataclass(frozen=True)
class GraphChange:
    """What one event does to the graph. Deletions apply before upserts of the same change."""

    nodes: tuple[GraphNode, ...] = ()
    edges: tuple[GraphEdge, ...] = ()
    deleted_nodes: tuple[NodeRef, ...] = ()
    deleted_edges: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.nodes or self.edges or self.deleted_nodes or self.deleted_edges)


@dataclass
class GraphBatch:
    """The changes of many events in order, as segments of upserts separated by deletions.

    Upserts of one segment are merged per id (later properties win, merged over earlier ones),
    so a batch becomes a few set-based writes while a delete still sees everything before it.
    """

    segments: list[GraphSegment] = field(default_factory=list)

    def add(self, change: GraphChange, event_id: str | None = None) -> None:
        if change.empty:
            return
        if change.deleted_nodes or change.deleted_edges or not self.segments:
            self.segments.append(GraphSegment(change.deleted_nodes, change.deleted_edges))
        segment = self.segments[-1]
        for node in change.nodes:
            segment.put_node(node, event_id)
        for item in change.edges:
            segment.put_edge(item, event_id)

    def upserted_refs(self) -> list[NodeRef]:
        """Every node the batch writes: its nodes and its edges' endpoints (merged in Neo4j)."""
        refs: dict[str, NodeRef] = {}
        for segment in self.segments:
            for node, _ in segment.nodes.values():
                refs.setdefault(node.ref.node_id, node.ref)
            for item, _ in segment.edges.values():
                refs.setdefault(item.source.node_id, item.source)
                refs.setdefault(item.target.node_id, item.target)
        return list(refs.values())

    def drop(self, node_ids: set[str]) -> None:
        """Leave out the upserts of these nodes and of every edge touching one of them."""
        for segment in self.segments:
            for node_id in node_ids & segment.nodes.keys():
                del segment.nodes[node_id]
            for edge_id, (item, _) in list(segment.edges.items()):
                if item.source.node_id in node_ids or item.target.node_id in node_ids:
                    del segment.edges[edge_id]

    @property
    def node_count(self) -> int:
        return sum(len(s.nodes) for s in self.segments)

    @property
    def edge_count(self) -> int:
        return sum(len(s.edges) for s in self.segments)


@dataclass
class GraphSegment:
    deleted_nodes: tuple[NodeRef, ...] = ()
    deleted_edges: tuple[str, ...] = ()
    nodes: dict[str, tuple[GraphNode, str | None]] = field(default_factory=dict)
    edges: dict[str, tuple[GraphEdge, str | None]] = field(default_factory=dict)

    def put_node(self, node: GraphNode, event_id: str | None) -> None:
        previous = self.nodes.get(node.ref.node_id)
        if previous is not None:
            merged = {**previous[0].properties, **node.properties}
            node = GraphNode(node.ref, node.tenant_id or previous[0].tenant_id, merged)
        self.nodes[node.ref.node_id] = (node, event_id)

    def put_edge(self, item: GraphEdge, event_id: str | None) -> None:
        previous = self.edges.get(item.edge_id)
        if previous is not None:
            merged = {**previous[0].properties, **item.properties}
            item = GraphEdge(
                item.edge_id,
                item.relationship,
                item.source,
                item.target,
                item.tenant_id or previous[0].tenant_id,
                merged,
            )
        self.edges[item.edge_id] = (item, event_id)
