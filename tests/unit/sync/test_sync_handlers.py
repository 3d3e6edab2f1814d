"""Handlers map CDC rows to graph changes and billable operations (pure, with fake lookups)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from cloudevents.core.v1.event import CloudEvent

from hartonomous.sync.dispatcher import to_sync_event
from hartonomous.sync.graph import GraphBatch, GraphChange, GraphNode, atom_ref, edge
from hartonomous.sync.handlers import handler_for
from hartonomous.sync.lookups import Component, Owner
from hartonomous.sync.rows import InvalidEventError

ATOM = "ab" * 32
CHILD = "cd" * 32
JOB = "9d5ed678-fe57-4cca-b40a-1234567890ab"


class FakeLookups:
    def node_components(self, parent_hex: str) -> list[Component]:
        return [Component(0, CHILD, 1), Component(2, CHILD, 3)]

    def job_principal(self, tenant_id: str, job_id: str) -> str | None:
        return "alice"

    def first_owner(self, atom_hex: str) -> Owner | None:
        return Owner("acme", "bob")


def event(table: str, operation: str, data: Any, **extensions: str) -> CloudEvent:
    attributes = {
        "specversion": "1.0",
        "id": "e-1",
        "source": "/tests",
        "type": f"io.hartonomous.cdc.{table}.{operation}",
        "table": table,
        "operation": operation,
        **extensions,
    }
    return CloudEvent(attributes, data)


def handle(cloud_event: CloudEvent) -> tuple[str, str | None, Any]:
    sync_event = to_sync_event(cloud_event)
    handler = handler_for(sync_event.table)
    lookups: Any = FakeLookups()
    party = handler.party(sync_event, lookups)
    outcome = handler.apply(sync_event, lookups)
    return handler.name, handler.billable_operation(sync_event), (party, outcome)


@pytest.mark.parametrize(
    ("table", "operation", "handler", "billable"),
    [
        ("holdings", "insert", "atoms", "neo4j_sync.ingest_completed"),
        ("holdings", "delete", "atoms", None),
        ("models", "insert", "models", "neo4j_sync.model_updated"),
        ("models", "update", "models", "neo4j_sync.model_updated"),
        ("model_tensors", "insert", "models", None),
        ("ingestion_jobs", "update", "jobs", None),
        ("tenants", "insert", "generic", None),
        ("inference_requests", "insert", "inference", None),
        ("inference_atoms", "insert", "inference", None),
        ("generation_streams", "insert", "inference", None),
    ],
)
def test_billable_operation_names_per_table_and_operation(
    table: str, operation: str, handler: str, billable: str | None
) -> None:
    sync_event = to_sync_event(event(table, operation, {}))
    chosen = handler_for(table)
    assert (chosen.name, chosen.billable_operation(sync_event)) == (handler, billable)


def test_a_holding_bills_its_tenant_and_the_jobs_principal() -> None:
    data = {
        "tenant_id": "acme",
        "holding_id": JOB,
        "atom_id": ATOM,
        "source_uri": "file:///a.txt",
        "job_id": JOB,
    }
    _, _, (party, outcome) = handle(event("holdings", "insert", data, tenantid="acme"))
    assert (party.tenant_id, party.principal_id) == ("acme", "alice")
    [owns] = outcome.change.edges
    assert owns.edge_id == f"OWNS:holding:acme:{JOB}"
    assert (owns.source.node_id, owns.target.node_id) == ("tenant:acme", f"atom:{ATOM}")
    # The delete carries only the key, and names the same edge.
    key_only = {"tenant_id": "acme", "holding_id": JOB}
    _, _, (_, deleted) = handle(event("holdings", "delete", key_only, tenantid="acme"))
    assert deleted.change.deleted_edges == (owns.edge_id,)


def test_chunks_are_skipped_and_composites_contain_their_node_children() -> None:
    chunk = {"atom_id": ATOM, "kind": "leaf", "modality": "binary", "subtype": "chunk"}
    _, _, (_, skipped) = handle(event("atoms", "insert", chunk))
    assert skipped.change.empty
    assert skipped.skipped == "skipped:atoms.chunk"
    composite = {"atom_id": ATOM, "kind": "composite", "modality": "text", "subtype": "file"}
    _, _, (_, outcome) = handle(event("atoms", "insert", composite))
    assert [e.properties["ordinal"] for e in outcome.change.edges] == [0, 2]
    assert {e.target.node_id for e in outcome.change.edges} == {f"atom:{CHILD}"}


def test_a_model_without_tenant_bills_the_first_holder() -> None:
    data = {"atom_id": ATOM, "format": "onnx", "parameter_count": 10, "tensor_count": 1}
    _, billable, (party, outcome) = handle(event("models", "insert", data))
    assert billable == "neo4j_sync.model_updated"
    assert (party.tenant_id, party.principal_id) == ("acme", "bob")
    assert [n.ref.label for n in outcome.change.nodes] == ["Model", "Atom"]


@pytest.mark.parametrize(
    ("cloud_event", "message"),
    [
        (event("holdings", "insert", {"holding_id": JOB}), "holdings.insert: no tenant"),
        (event("atoms", "insert", {"atom_id": "xyz"}), "column atom_id is 'xyz'"),
        (event("atoms", "insert", "text"), "data is str, not a JSON object"),
        (event("atoms", "merge", {}), "names no table"),
        (event("model_tensors", "insert", {"model_atom_id": ATOM, "ordinal": "1"}), "integer"),
    ],
)
def test_wrong_input_names_the_problem(cloud_event: CloudEvent, message: str) -> None:
    with pytest.raises(InvalidEventError, match=message):
        handle(cloud_event)


def test_a_batch_merges_upserts_but_keeps_deletes_in_order() -> None:
    node = atom_ref(ATOM)
    batch = GraphBatch()
    batch.add(GraphChange(nodes=(GraphNode(node, None, {"a": 1}),)))
    batch.add(GraphChange(nodes=(GraphNode(node, None, {"b": 2}),)))
    batch.add(GraphChange(deleted_nodes=(node,)))
    batch.add(GraphChange(edges=(edge("CONTAINS", node, atom_ref(CHILD), key="1"),)))
    first, second = batch.segments
    assert first.nodes[node.node_id][0].properties == {"a": 1, "b": 2}
    assert second.deleted_nodes == (node,)
    assert list(second.edges) == [f"CONTAINS:atom:{ATOM}>atom:{CHILD}#1"]


@pytest.mark.parametrize(
    ("status", "operation", "billable"),
    [
        ("completed", "insert", "neo4j_sync.inference_completed"),
        ("completed", "update", "neo4j_sync.inference_completed"),
        ("failed", "update", None),
        ("in_progress", "update", None),
        ("completed", "delete", None),
    ],
)
def test_only_a_completed_inference_is_billed_under_a_key_naming_it(
    status: str, operation: str, billable: str | None
) -> None:
    data = {
        "tenant_id": "acme",
        "inference_id": JOB,
        "status": status,
        "usage_units": 2,
        "attributes": {"generation": "image", "token_count": 9000},
    }
    sync_event = to_sync_event(event("inference_requests", operation, data, id="e-7"))
    handler = handler_for("inference_requests")
    assert handler.billable_operation(sync_event) == billable
    metering = handler.metering(sync_event, FakeLookups())  # type: ignore[arg-type]
    assert metering.idempotency_key == f"inference:acme:{JOB}"
    # Units come from the row, never from the caller's attributes.
    assert metering.attributes == {"generation": "image", "usage_units": 2}


def test_an_inference_atom_of_an_unknown_role_is_an_invalid_event() -> None:
    data = {"tenant_id": "acme", "inference_id": JOB, "role": "side", "ordinal": 0}
    with pytest.raises(InvalidEventError, match="role"):
        handle(event("inference_atoms", "insert", {**data, "atom_id": ATOM, "name": "x"}))


@pytest.mark.parametrize(
    ("source_type", "source_uri", "billable"),
    [
        ("inference", "inference:9d5ed678/output/y", None),
        ("inference", "inference:9d5ed678/input/x", None),
        # A file or upload is ingestion, whatever its name.
        ("upload", "inference:9d5ed678/output/y", "neo4j_sync.ingest_completed"),
        ("file", "/data/inference:notes.txt", "neo4j_sync.ingest_completed"),
    ],
)
def test_an_inferences_holdings_are_not_billed_as_ingestion(
    source_type: str, source_uri: str, billable: str | None
) -> None:
    data = {
        "tenant_id": "acme",
        "holding_id": JOB,
        "atom_id": ATOM,
        "source_uri": source_uri,
        "source_type": source_type,
    }
    sync_event = to_sync_event(event("holdings", "insert", data))
    assert handler_for("holdings").billable_operation(sync_event) == billable


def test_a_cdc_event_keeps_its_time_which_decides_its_billing_period() -> None:
    committed = datetime(2026, 1, 31, 23, 59, 59, tzinfo=UTC)
    timed = CloudEvent(
        {
            "specversion": "1.0",
            "id": "e-9",
            "source": "/tests",
            "type": "io.hartonomous.cdc.holdings.insert",
            "time": committed,
        },
        {"tenant_id": "acme"},
    )
    assert to_sync_event(timed).time == committed
