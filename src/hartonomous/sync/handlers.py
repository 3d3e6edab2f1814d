"""One handler per captured table family (docs/sync.md): event → graph change and billable party.

| handler  | tables                                   | billable operation                  |
|----------|------------------------------------------|-------------------------------------|
| atoms    | atoms, atom_relations, holdings          | holdings insert: ingest_completed   |
|          |                                          | (not an inference's input/output)   |
| models   | models, model_tensors                    | models insert/update: model_updated |
| jobs     | ingestion_jobs, ingestion_job_atoms      | none                                |
| inference| inference_requests, inference_atoms,     | inference_requests completed:       |
|          | generation_streams                       | inference_completed (once each)     |
| generic  | tenants, principals, anything else       | none                                |

Bare chunks and spans of large files (`binary`/`chunk|span` atoms: ~1400 for a 90 MB model)
are not graph nodes: the file, its text segments, models and tensors are. Such skips, and
events of tables no handler knows, are counted, never dropped silently.
"""

from __future__ import annotations

from collections.abc import Mapping

from hartonomous.cdc.billed import BILLED_PRINCIPAL, BILLED_TENANT
from hartonomous.json_types import JsonValue
from hartonomous.sync.events import (
    Handler,
    HandlerOutcome,
    MeteredPerEvent,
    Party,
    SyncEvent,
    require_tenant,
    tenant_node,
)
from hartonomous.sync.events import own_party as _own_party
from hartonomous.sync.graph import (
    GraphChange,
    GraphEdge,
    GraphNode,
    atom_ref,
    edge,
    job_ref,
    model_ref,
    principal_ref,
    tenant_ref,
    tensor_ref,
)
from hartonomous.sync.inference_handler import InferenceHandler
from hartonomous.sync.lookups import Lookups, is_chunk
from hartonomous.sync.rows import preview

INGEST_COMPLETED = "neo4j_sync.ingest_completed"
MODEL_UPDATED = "neo4j_sync.model_updated"
# Holdings of an inference's inputs and outputs: source type `inference`, source URI
# `inference:<id>/<input|output>/<name>` (docs/inference.md).
INFERENCE_SOURCE_TYPE = "inference"
INFERENCE_SOURCE_PREFIX = "inference:"


def _atom_node(atom_hex: str, properties: Mapping[str, JsonValue] | None = None) -> GraphNode:
    return GraphNode(atom_ref(atom_hex), None, {"atom_id": atom_hex, **(properties or {})})


class AtomsHandler(MeteredPerEvent):
    name = "atoms"
    _tables = frozenset({"atoms", "atom_relations", "holdings"})

    def handles(self, table: str) -> bool:
        return table in self._tables

    def billable_operation(self, event: SyncEvent) -> str | None:
        if event.table != "holdings" or event.operation != "insert":
            return None
        # An inference's inputs and outputs are held by its tenant but billed with the
        # inference. Only the job worker writes this source type (ingest writes file/upload).
        source = event.row.value("source_uri")
        if (
            event.row.value("source_type") == INFERENCE_SOURCE_TYPE
            and isinstance(source, str)
            and source.startswith(INFERENCE_SOURCE_PREFIX)
        ):
            return None
        return INGEST_COMPLETED

    def party(self, event: SyncEvent, lookups: Lookups) -> Party:
        if event.table != "holdings":
            return _own_party(event)
        tenant = require_tenant(event)
        principal = event.principal_id
        job_id = event.row.optional_uuid("job_id") if event.operation != "delete" else None
        if not principal and job_id is not None:
            principal = lookups.job_principal(tenant, job_id) or ""
        return Party(tenant, principal)

    def apply(self, event: SyncEvent, lookups: Lookups) -> HandlerOutcome:
        if event.table == "atoms":
            return self._atom(event, lookups)
        if event.table == "atom_relations":
            return self._relation(event)
        return self._holding(event)

    def _atom(self, event: SyncEvent, lookups: Lookups) -> HandlerOutcome:
        row = event.row
        atom_hex = row.digest("atom_id")
        if event.operation == "delete":
            return HandlerOutcome(GraphChange(deleted_nodes=(atom_ref(atom_hex),)))
        modality, subtype = row.text("modality"), row.optional_text("subtype")
        if is_chunk(modality, subtype):
            return HandlerOutcome(GraphChange(), skipped="skipped:atoms.chunk")
        properties: dict[str, JsonValue] = {
            **row.pick("kind", "modality", "subtype", "size_bytes", "metadata", "created_at"),
            # Absent when an update left the (TOASTed) text unchanged: the stored preview stays.
            **row.pick_as("canonical_text", lambda c: preview(row.optional_text(c))),
        }
        node = _atom_node(atom_hex, properties)
        edges: list[GraphEdge] = []
        if row.value("kind") == "composite":
            edges = [
                edge(
                    "CONTAINS",
                    node.ref,
                    atom_ref(component.child_hex),
                    key=str(component.ordinal),
                    properties={"ordinal": component.ordinal, "repeat": component.repeat},
                )
                for component in lookups.node_components(atom_hex)
            ]
        return HandlerOutcome(GraphChange(nodes=(node,), edges=tuple(edges)))

    def _relation(self, event: SyncEvent) -> HandlerOutcome:
        row = event.row
        source_hex = row.digest("from_atom_id")
        relation_type, ordinal = row.text("relation_type"), row.integer("ordinal")
        # The derived atom points at what it was derived from; the id needs only the key.
        edge_id = f"DERIVED_FROM:atom:{source_hex}#{relation_type}/{ordinal}"
        if event.operation == "delete":
            return HandlerOutcome(GraphChange(deleted_edges=(edge_id,)))
        derived_hex = row.digest("to_atom_id")
        relation = edge(
            "DERIVED_FROM",
            atom_ref(derived_hex),
            atom_ref(source_hex),
            edge_id=edge_id,
            properties={
                "relation_type": relation_type,
                "ordinal": ordinal,
                **row.pick("metadata"),
            },
        )
        return HandlerOutcome(GraphChange(edges=(relation,)))

    def _holding(self, event: SyncEvent) -> HandlerOutcome:
        row = event.row
        tenant = require_tenant(event)
        holding_id = row.uuid("holding_id")
        edge_id = f"OWNS:holding:{tenant}:{holding_id}"
        if event.operation == "delete":
            return HandlerOutcome(GraphChange(deleted_edges=(edge_id,)))
        atom_hex = row.digest("atom_id")
        owns = edge(
            "OWNS",
            tenant_ref(tenant),
            atom_ref(atom_hex),
            tenant_id=tenant,
            edge_id=edge_id,
            properties={
                "holding_id": holding_id,
                **row.pick("source_uri", "source_type", "visibility", "job_id", "created_at"),
            },
        )
        nodes = (tenant_node(tenant), _atom_node(atom_hex))
        return HandlerOutcome(GraphChange(nodes=nodes, edges=(owns,)))


class ModelsHandler(MeteredPerEvent):
    name = "models"
    _tables = frozenset({"models", "model_tensors"})

    def handles(self, table: str) -> bool:
        return table in self._tables

    def billable_operation(self, event: SyncEvent) -> str | None:
        return MODEL_UPDATED if event.table == "models" and event.operation != "delete" else None

    def party(self, event: SyncEvent, lookups: Lookups) -> Party:
        # Models are shared; the tenant who first held the model file brought it in.
        if event.tenant_id or event.table != "models" or event.operation == "delete":
            return _own_party(event)
        # Resolved at capture (`cdc/billed.py`), so that a redelivery bills the same tenant.
        billed = event.extensions.get(BILLED_TENANT)
        if isinstance(billed, str) and billed:
            principal = event.extensions.get(BILLED_PRINCIPAL)
            return Party(billed, principal if isinstance(principal, str) else event.principal_id)
        # An event captured before the party travelled in it: resolved now.
        owner = lookups.first_owner(event.row.digest("atom_id"))
        if owner is None:
            return _own_party(event)
        return Party(owner.tenant_id, owner.principal_id or event.principal_id)

    def apply(self, event: SyncEvent, lookups: Lookups) -> HandlerOutcome:
        row = event.row
        if event.table == "models":
            atom_hex = row.digest("atom_id")
            if event.operation == "delete":
                return HandlerOutcome(GraphChange(deleted_nodes=(model_ref(atom_hex),)))
            model = GraphNode(
                model_ref(atom_hex),
                None,
                {
                    "atom_id": atom_hex,
                    **row.pick(
                        "format",
                        "architecture",
                        "parameter_count",
                        "tensor_count",
                        "dtypes",
                        "metadata",
                        "created_at",
                    ),
                },
            )
            source = edge("DERIVED_FROM", model.ref, atom_ref(atom_hex))
            return HandlerOutcome(GraphChange(nodes=(model, _atom_node(atom_hex)), edges=(source,)))
        model_hex, ordinal = row.digest("model_atom_id"), row.integer("ordinal")
        tensor = tensor_ref(model_hex, ordinal)
        if event.operation == "delete":
            return HandlerOutcome(GraphChange(deleted_nodes=(tensor,)))
        node = GraphNode(
            tensor,
            None,
            {
                "model_atom_id": model_hex,
                "ordinal": ordinal,
                **row.pick_as("name", row.text),
                **row.pick_as("tensor_atom_id", row.optional_digest),
                **row.pick("dtype", "shape", "parameter_count", "byte_offset", "byte_length"),
            },
        )
        contains = edge(
            "CONTAINS",
            model_ref(model_hex),
            tensor,
            key=str(ordinal),
            properties={"ordinal": ordinal},
        )
        return HandlerOutcome(GraphChange(nodes=(node,), edges=(contains,)))


class JobsHandler(MeteredPerEvent):
    name = "jobs"
    _tables = frozenset({"ingestion_jobs", "ingestion_job_atoms"})

    def handles(self, table: str) -> bool:
        return table in self._tables

    def billable_operation(self, event: SyncEvent) -> str | None:
        return None

    def party(self, event: SyncEvent, lookups: Lookups) -> Party:
        return Party(require_tenant(event), event.principal_id)

    def apply(self, event: SyncEvent, lookups: Lookups) -> HandlerOutcome:
        row = event.row
        tenant = require_tenant(event)
        job = job_ref(tenant, row.uuid("job_id"))
        if event.table == "ingestion_jobs":
            if event.operation == "delete":
                return HandlerOutcome(GraphChange(deleted_nodes=(job,)))
            node = GraphNode(
                job,
                tenant,
                {
                    "job_id": row.uuid("job_id"),
                    "tenant_id": tenant,
                    **row.pick(
                        "principal_id",
                        "status",
                        "file_count",
                        "failed_count",
                        "new_bytes",
                        "reused_bytes",
                        "created_at",
                        "finished_at",
                    ),
                },
            )
            edges = [edge("OWNS", tenant_ref(tenant), job, tenant_id=tenant)]
            nodes = [node, tenant_node(tenant)]
            principal = row.optional_text("principal_id")
            if principal:
                who = principal_ref(tenant, principal)
                nodes.append(GraphNode(who, tenant, {"principal_id": principal}))
                edges.append(edge("REQUESTED", who, job, tenant_id=tenant))
            return HandlerOutcome(GraphChange(nodes=tuple(nodes), edges=tuple(edges)))
        ordinal = row.integer("ordinal")
        edge_id = f"PRODUCED:{job.node_id}#{ordinal}"
        if event.operation == "delete":
            return HandlerOutcome(GraphChange(deleted_edges=(edge_id,)))
        atom_hex = row.optional_digest("atom_id")
        if atom_hex is None:
            return HandlerOutcome(GraphChange(), skipped="skipped:ingestion_job_atoms.failed")
        produced = edge(
            "PRODUCED",
            job,
            atom_ref(atom_hex),
            tenant_id=tenant,
            edge_id=edge_id,
            properties={"ordinal": ordinal, **row.pick("path", "status", "holding_id")},
        )
        return HandlerOutcome(GraphChange(nodes=(_atom_node(atom_hex),), edges=(produced,)))


class GenericHandler(MeteredPerEvent):
    """Tenants and principals; any other table is completed and counted, not projected."""

    name = "generic"

    def handles(self, table: str) -> bool:
        return True

    def billable_operation(self, event: SyncEvent) -> str | None:
        return None

    def party(self, event: SyncEvent, lookups: Lookups) -> Party:
        return _own_party(event)

    def apply(self, event: SyncEvent, lookups: Lookups) -> HandlerOutcome:
        row = event.row
        if event.table == "tenants":
            tenant = row.text("tenant_id")
            if event.operation == "delete":
                return HandlerOutcome(GraphChange(deleted_nodes=(tenant_ref(tenant),)))
            node = GraphNode(
                tenant_ref(tenant),
                tenant,
                {"tenant_id": tenant, **row.pick("display_name", "is_active", "created_at")},
            )
            return HandlerOutcome(GraphChange(nodes=(node,)))
        if event.table == "principals":
            tenant, principal = row.text("tenant_id"), row.text("principal_id")
            who = principal_ref(tenant, principal)
            if event.operation == "delete":
                return HandlerOutcome(GraphChange(deleted_nodes=(who,)))
            node = GraphNode(
                who,
                tenant,
                {
                    "tenant_id": tenant,
                    "principal_id": principal,
                    **row.pick("display_name", "kind", "is_active", "created_at"),
                },
            )
            owns = edge("OWNS", tenant_ref(tenant), who, tenant_id=tenant)
            return HandlerOutcome(GraphChange(nodes=(node, tenant_node(tenant)), edges=(owns,)))
        return HandlerOutcome(GraphChange(), skipped=f"unmapped:{event.name}")


HANDLERS: tuple[Handler, ...] = (
    AtomsHandler(),
    ModelsHandler(),
    JobsHandler(),
    InferenceHandler(),
    GenericHandler(),
)


def handler_for(table: str) -> Handler:
    """The first handler that takes the table (generic takes everything)."""
    return next(handler for handler in HANDLERS if handler.handles(table))
