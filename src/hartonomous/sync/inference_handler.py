"""Inferences in the graph and the ledger: `inference_requests`, `inference_atoms` and
`generation_streams` (docs/sync.md, "Handlers, graph and billing operations").

- `inference_requests` insert/update: `Inference` node, `(Tenant)-[:OWNS]->(Inference)`,
  `(Principal)-[:REQUESTED]->(Inference)`, `(Inference)-[:USED_MODEL {weight}]->(Model)`;
- `inference_atoms` insert/update: `(Inference)-[:USED_INPUT {name, ordinal}]->(Atom)` (role
  input) or `(Inference)-[:PRODUCED {name, ordinal}]->(Atom)` (role output);
- `generation_streams` insert/update: `GenerationStream` node (scope, model, size; never the
  bytes), `(Inference)-[:GENERATED]->(GenerationStream)`;
- a delete removes the node (with its edges) or the edge.

Billing: an `inference_requests` event whose row is `completed` is
`neo4j_sync.inference_completed`, units = the row's `usage_units`, multiplier dimensions from
the row's `attributes` (docs/billing.md). Its ledger key names the inference, so the inference
is billed once however many events carry it completed (a cache hit inserted completed, the
worker's completing update, a later feedback update, a replayed or redelivered event); a
`pending`, `in_progress` or `failed` row is not billed (counted `unbilled:`).
"""

from __future__ import annotations

from collections.abc import Mapping

from hartonomous.billing.ledger import inference_ledger_key
from hartonomous.json_types import JsonValue
from hartonomous.sync.events import (
    HandlerOutcome,
    Metering,
    Party,
    SyncEvent,
    require_tenant,
    tenant_node,
)
from hartonomous.sync.graph import (
    GraphChange,
    GraphEdge,
    GraphNode,
    Relationship,
    atom_ref,
    edge,
    inference_ref,
    model_ref,
    principal_ref,
    stream_ref,
    tenant_ref,
)
from hartonomous.sync.lookups import Lookups
from hartonomous.sync.rows import InvalidEventError

INFERENCE_COMPLETED = "neo4j_sync.inference_completed"
# One model ran each inference; a mixture would weigh each of its models below 1.
SINGLE_MODEL_WEIGHT = 1.0
# Attributes that `billing.meter.resolve_units` reads as units: a caller's attributes must not
# set what an inference is billed for, the row's `usage_units` does.
_UNIT_ATTRIBUTES = ("usage_units", "usage", "token_count", "duration_seconds")
_EDGE_OF_ROLE: dict[str, Relationship] = {"input": "USED_INPUT", "output": "PRODUCED"}


def _text_of(value: JsonValue) -> JsonValue:
    # Exact units as a decimal string: Neo4j would turn most into floats.
    return None if value is None else str(value)


class InferenceHandler:
    name = "inference"
    _tables = frozenset({"inference_requests", "inference_atoms", "generation_streams"})

    def handles(self, table: str) -> bool:
        return table in self._tables

    def billable_operation(self, event: SyncEvent) -> str | None:
        if event.table != "inference_requests" or event.operation == "delete":
            return None
        if event.row.value("status") != "completed":
            return None
        # A cache hit computed nothing again: its usage_units are 0 and it is not billed (the
        # meter would read 0 units as "not given" and bill 1).
        return None if event.row.value("cache_hit") is True else INFERENCE_COMPLETED

    def party(self, event: SyncEvent, lookups: Lookups) -> Party:
        return Party(require_tenant(event), event.principal_id)

    def metering(self, event: SyncEvent, lookups: Lookups) -> Metering:
        tenant = require_tenant(event)
        inference_id = event.row.uuid("inference_id")
        attributes: Mapping[str, object] | None
        if "attributes" in event.row.data:
            value = event.row.value("attributes")
            attributes = value if isinstance(value, dict) else {}
        else:  # unchanged and TOASTed: not carried by the update
            attributes = lookups.inference_attributes(tenant, inference_id) or {}
        measured = {k: v for k, v in attributes.items() if k not in _UNIT_ATTRIBUTES}
        units = event.row.value("usage_units")
        if units is not None:
            measured["usage_units"] = units
        return Metering(measured, inference_ledger_key(tenant, inference_id))

    def apply(self, event: SyncEvent, lookups: Lookups) -> HandlerOutcome:
        tenant = require_tenant(event)
        if event.table == "inference_requests":
            return self._request(event, tenant)
        if event.table == "inference_atoms":
            return self._atom(event, tenant)
        return self._stream(event, tenant)

    def _request(self, event: SyncEvent, tenant: str) -> HandlerOutcome:
        row = event.row
        inference_id = row.uuid("inference_id")
        inference = inference_ref(tenant, inference_id)
        if event.operation == "delete":
            return HandlerOutcome(GraphChange(deleted_nodes=(inference,)))
        model_hex = row.optional_digest("model_atom_id")
        properties: dict[str, JsonValue] = {
            "inference_id": inference_id,
            "tenant_id": tenant,
            **row.pick(
                "principal_id",
                "task",
                "status",
                "cache_hit",
                "duration_ms",
                "rating",
                "requested_at",
                "finished_at",
            ),
            **row.pick_as("usage_units", lambda c: _text_of(row.value(c))),
        }
        if "model_atom_id" in row.data:
            properties["model"] = model_hex
        nodes = [GraphNode(inference, tenant, properties), tenant_node(tenant)]
        edges: list[GraphEdge] = [edge("OWNS", tenant_ref(tenant), inference, tenant_id=tenant)]
        principal = row.optional_text("principal_id")
        if principal:
            who = principal_ref(tenant, principal)
            nodes.append(GraphNode(who, tenant, {"principal_id": principal}))
            edges.append(edge("REQUESTED", who, inference, tenant_id=tenant))
        if model_hex is not None:
            edges.append(
                edge(
                    "USED_MODEL",
                    inference,
                    model_ref(model_hex),
                    tenant_id=tenant,
                    properties={"weight": SINGLE_MODEL_WEIGHT},
                )
            )
        return HandlerOutcome(GraphChange(nodes=tuple(nodes), edges=tuple(edges)))

    def _atom(self, event: SyncEvent, tenant: str) -> HandlerOutcome:
        row = event.row
        inference = inference_ref(tenant, row.uuid("inference_id"))
        role, ordinal = row.text("role"), row.integer("ordinal")
        relationship = _EDGE_OF_ROLE.get(role)
        if relationship is None:
            raise InvalidEventError(f"{event.name}: column role is {role!r}, not input or output")
        # Deletes carry only the key (tenant, inference, role, ordinal): the id is built from it.
        edge_id = f"{relationship}:{inference.node_id}#{ordinal}"
        if event.operation == "delete":
            return HandlerOutcome(GraphChange(deleted_edges=(edge_id,)))
        atom_hex = row.digest("atom_id")
        used = edge(
            relationship,
            inference,
            atom_ref(atom_hex),
            tenant_id=tenant,
            edge_id=edge_id,
            properties={"ordinal": ordinal, **row.pick("name", "holding_id")},
        )
        atom = GraphNode(atom_ref(atom_hex), None, {"atom_id": atom_hex})
        return HandlerOutcome(GraphChange(nodes=(atom,), edges=(used,)))

    def _stream(self, event: SyncEvent, tenant: str) -> HandlerOutcome:
        row = event.row
        stream_id = row.uuid("stream_id")
        stream = stream_ref(tenant, stream_id)
        if event.operation == "delete":
            return HandlerOutcome(GraphChange(deleted_nodes=(stream,)))
        inference_id = row.uuid("inference_id")
        properties: dict[str, JsonValue] = {
            "stream_id": stream_id,
            "tenant_id": tenant,
            "inference_id": inference_id,
            **row.pick("scope", "model", "created_at"),
        }
        size = _stream_size(row.data)
        if size is not None:
            properties["size"] = size
        node = GraphNode(stream, tenant, properties)
        generated = edge("GENERATED", inference_ref(tenant, inference_id), stream, tenant_id=tenant)
        return HandlerOutcome(GraphChange(nodes=(node,), edges=(generated,)))


def _stream_size(data: Mapping[str, JsonValue]) -> int | None:
    """The stream's size in bytes: the generated column when the event carries it (pgoutput
    publishes generated columns from PostgreSQL 18 on), else the bytes' hex length / 2."""
    size = data.get("payload_size_bytes")
    if isinstance(size, int) and not isinstance(size, bool):
        return size
    stream = data.get("stream")
    return len(stream) // 2 if isinstance(stream, str) else None
