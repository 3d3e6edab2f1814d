"""Lineage over the graph the real pipeline wrote (ingest → CDC → broker → sync), and the same
answer from a Cypher variable-length path query over the Neo4j projection of that graph."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from neo4j import GraphDatabase
from sqlalchemy import Engine
from tests.integration.data_plane.data_plane_support import write_onnx
from tests.integration.inference_rows import InferenceRows, InputRef, insert_inference
from tests.integration.sync.conftest import Source, neo4j_graph, sql_graph

from hartonomous.atoms.read import AtomNotFoundError
from hartonomous.config import Settings
from hartonomous.errors import UsageError
from hartonomous.inference import lineage as lineage_module
from hartonomous.inference.lineage import FORWARD_UP, REVERSE_UP, TERMINAL_PREFIXES
from hartonomous.inference.lookup import InferenceNotFoundError
from hartonomous.ingest.pipeline import IngestRequest, ingest_paths
from hartonomous.services import Platform
from hartonomous.services.lineage import Lineage, lineage
from hartonomous.sync.worker import SyncWorker


@dataclass
class World:
    platform: Platform
    model: bytes
    tensor_count: int
    input_atom: bytes
    acme: InferenceRows
    globex: InferenceRows


def npy(values: list[float]) -> bytes:
    out = io.BytesIO()
    np.save(out, np.array(values, dtype=np.float32).reshape(3, 2))
    return out.getvalue()


@pytest.fixture
def world(source: Source, engine: Engine, graph_uri: str, tmp_path: Path) -> World:
    source.tenant("acme", "alice")
    source.tenant("globex", "gus")
    # A small ONNX model with two initializers, generated (onnxruntime's mul_1.onnx is refused
    # by model ingestion: "... not in graph input").
    model_file = write_onnx(tmp_path / "tiny.onnx")
    input_file = tmp_path / "input.npy"
    input_file.write_bytes(npy([1, 2, 3, 4, 5, 6]))
    for tenant, principal in (("acme", "alice"), ("globex", "gus")):
        outcome = ingest_paths(
            engine,
            IngestRequest(tenant_id=tenant, principal_id=principal),
            [model_file, input_file],
        )
        assert outcome.status == "completed", [(f.path, f.status, f.error) for f in outcome.files]
    model, tensors = source.conn.execute("SELECT atom_id, tensor_count FROM models").fetchone()
    atom, acme_holding = source.conn.execute(
        "SELECT atom_id, holding_id FROM holdings WHERE tenant_id = 'acme' "
        "AND source_uri LIKE '%%input.npy'"
    ).fetchone()
    globex_holding = source.scalar(
        "SELECT holding_id FROM holdings WHERE tenant_id = 'globex' AND atom_id = %s", atom
    )
    notes = tmp_path / "notes.txt"
    notes.write_text("Sigmoid squashes its input.\n\nIt maps zero to one half.\n")
    ingested = ingest_paths(engine, IngestRequest(tenant_id="acme"), [notes])
    assert ingested.status == "completed"
    # A text segment of notes.txt: a child of the file's atom, itself held by no holding.
    segment = source.scalar(
        "SELECT c.child_atom_id FROM atom_components c JOIN holdings h "
        "ON h.atom_id = c.parent_atom_id AND h.source_uri LIKE '%%notes.txt' "
        "JOIN atoms a ON a.atom_id = c.child_atom_id AND a.modality = 'text' "
        "ORDER BY c.ordinal LIMIT 1"
    )
    output = npy([1, 4, 9, 16, 25, 36])
    # Both tenants ran the same model on the same input: the output atom is shared too.
    acme = insert_inference(
        source.conn,
        "acme",
        principal_id="alice",
        model_atom_id=bytes(model),
        inputs=[InputRef("X", bytes(atom), acme_holding), InputRef("note", bytes(segment))],
        outputs=[("Y", output)],
        model_name="tiny",
    )
    globex = insert_inference(
        source.conn,
        "globex",
        principal_id="gus",
        model_atom_id=bytes(model),
        inputs=[InputRef("X", bytes(atom), globex_holding)],
        outputs=[("Y", output)],
        model_name="tiny",
    )
    source.capture()
    worker = SyncWorker(source.url, Settings.model_validate({"neo4j": {"uri": graph_uri}}))
    try:
        assert worker.drain().dead_lettered == 0
    finally:
        worker.close()
    assert neo4j_graph(graph_uri) == sql_graph(source.conn)
    return World(
        Platform(engine, Settings(), ""), bytes(model), int(tensors), bytes(atom), acme, globex
    )


def ids(found: Lineage) -> tuple[set[str], set[str]]:
    return {n.node_id for n in found.nodes}, {e.edge_id for e in found.edges}


def check_up_from_an_output_atom_reaches_the_model_tensors_and_the_input_files(
    world: World,
) -> None:
    output = world.acme.output_atoms["Y"].hex()
    found = lineage(world.platform, "acme", output, "up", depth=8)
    by_label: dict[str, set[str]] = {}
    for node in found.nodes:
        by_label.setdefault(node.label, set()).add(node.node_id)
    inference = f"inference:acme:{world.acme.inference_id}"
    assert by_label["Inference"] == {inference}  # never globex's, though the atom is shared
    assert by_label["Model"] == {f"model:{world.model.hex()}"}
    assert len(by_label["Tensor"]) == world.tensor_count > 0
    assert f"atom:{world.input_atom.hex()}" in by_label["Atom"]
    assert len(by_label["IngestionJob"]) == 2  # acme's jobs that ingested the inputs' files
    assert by_label["Tenant"] == {"tenant:acme"}
    relationships = {e.relationship for e in found.edges}
    assert {"PRODUCED", "USED_MODEL", "CONTAINS", "USED_INPUT", "OWNS"} <= relationships
    # The input's file: the holding (an OWNS edge) with its source path.
    files_held = {
        str(e.properties.get("source_uri"))
        for e in found.edges
        if e.relationship == "OWNS" and e.to_node_id == f"atom:{world.input_atom.hex()}"
    }
    assert len(files_held) == 1
    assert files_held.pop().endswith("input.npy")
    # The text segment input came out of notes.txt: up through the file's CONTAINS to its
    # holding.
    segment_files = {
        str(e.properties.get("source_uri"))
        for e in found.edges
        if e.relationship == "OWNS" and e.to_node_id in by_label["Atom"]
    }
    assert any(uri.endswith("notes.txt") for uri in segment_files)
    assert not any(n.node_id.startswith(("inference:globex", "tenant:globex")) for n in found.nodes)
    depth_of = {n.node_id: n.depth for n in found.nodes}
    assert depth_of[inference] == 1
    assert depth_of[f"model:{world.model.hex()}"] == 2


def check_down_from_the_shared_input_shows_only_the_callers_inference(world: World) -> None:
    found = lineage(world.platform, "acme", world.input_atom.hex(), "down", depth=4)
    nodes, _ = ids(found)
    assert f"inference:acme:{world.acme.inference_id}" in nodes
    assert f"stream:acme:{world.acme.stream_id}" in nodes
    assert f"atom:{world.acme.output_atoms['Y'].hex()}" in nodes
    assert not any("globex" in node for node in nodes)
    # And from globex's side, the mirror image.
    theirs, _ = ids(lineage(world.platform, "globex", world.input_atom.hex(), "down", depth=4))
    assert f"inference:globex:{world.globex.inference_id}" in theirs
    assert not any("acme" in node for node in theirs)


def check_down_from_a_model_and_up_from_an_inference(world: World) -> None:
    down, _ = ids(lineage(world.platform, "acme", world.model.hex(), "down", depth=2))
    assert f"inference:acme:{world.acme.inference_id}" in down
    assert f"atom:{world.acme.output_atoms['Y'].hex()}" in down
    assert not any("globex" in node for node in down)
    up = lineage(world.platform, "acme", str(world.acme.inference_id), "up", depth=1)
    assert {n.label for n in up.nodes} == {"Inference", "Model", "Atom", "Tenant", "Principal"}


def check_another_tenants_inference_or_atom_is_not_found(world: World, source: Source) -> None:
    with pytest.raises(InferenceNotFoundError):
        lineage(world.platform, "acme", str(world.globex.inference_id), "up")
    source.tenant("initech")
    with pytest.raises(AtomNotFoundError):
        lineage(world.platform, "initech", world.input_atom.hex(), "down")
    with pytest.raises(UsageError, match="neither an inference id"):
        lineage(world.platform, "acme", "not-an-id", "up")
    with pytest.raises(UsageError, match="depth"):
        lineage(world.platform, "acme", world.model.hex(), "up", depth=0)


# The same walk in Cypher: every simple path of 1..depth relationships from the start whose
# each step follows an "up" relationship forward or a "down" one backward (or the reverse;
# `REL:Label` names the relationships of that type from nodes of that label),
# of the tenant or shared, never through a tenant or principal.
CYPHER = """
MATCH p = (start {node_id: $start})-[*1..%d]-(end)
WITH p, nodes(p) AS ns, relationships(p) AS rs
WHERE all(i IN range(0, size(rs) - 1) WHERE
        ((startNode(rs[i]) = ns[i] AND any(kind IN [type(rs[i])]
              + [l IN labels(ns[i]) | type(rs[i]) + ':' + l] WHERE kind IN $forward))
         OR (endNode(rs[i]) = ns[i] AND any(kind IN [type(rs[i])]
              + [l IN labels(ns[i + 1]) | type(rs[i]) + ':' + l] WHERE kind IN $backward)))
        AND (rs[i].tenant_id IS NULL OR rs[i].tenant_id = $tenant)
        AND (ns[i + 1].tenant_id IS NULL OR ns[i + 1].tenant_id = $tenant))
  AND all(i IN range(1, size(ns) - 2) WHERE NOT split(ns[i].node_id, ':')[0] IN $terminal)
  AND all(i IN range(0, size(ns) - 1) WHERE
        none(j IN range(0, i - 1) WHERE ns[j] = ns[i]))
UNWIND range(0, size(rs) - 1) AS i
RETURN collect(DISTINCT ns[i + 1].node_id) AS nodes, collect(DISTINCT rs[i].edge_id) AS edges
"""


def neo4j_lineage(
    uri: str, tenant: str, start: str, direction: str, depth: int
) -> tuple[set[str], set[str]]:
    forward, backward = (FORWARD_UP, REVERSE_UP) if direction == "up" else (REVERSE_UP, FORWARD_UP)
    with GraphDatabase.driver(uri, auth=None) as driver:
        records, _, _ = driver.execute_query(
            CYPHER % depth,
            start=start,
            tenant=tenant,
            forward=list(forward),
            backward=list(backward),
            terminal=list(TERMINAL_PREFIXES),
        )
    row: Any = records[0]
    return {start, *row["nodes"]}, set(row["edges"])


CASES = (
    ("acme", "output", "up", 8),
    ("acme", "input", "down", 5),
    ("globex", "input", "down", 5),
    ("acme", "model", "down", 3),
    ("acme", "model", "up", 4),
    ("globex", "inference", "up", 3),
)


def test_lineage_walks_the_tenants_graph(
    world: World, source: Source, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One world (ingest and sync are slow): each check is a behaviour users rely on."""
    check_up_from_an_output_atom_reaches_the_model_tensors_and_the_input_files(world)
    check_down_from_the_shared_input_shows_only_the_callers_inference(world)
    check_down_from_a_model_and_up_from_an_inference(world)
    check_another_tenants_inference_or_atom_is_not_found(world, source)
    check_a_walk_past_its_bounds_says_truncated(world, monkeypatch)


def check_a_walk_past_its_bounds_says_truncated(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = world.acme.output_atoms["Y"].hex()
    whole = lineage(world.platform, "acme", output, "up", depth=8)
    assert not whole.truncated
    monkeypatch.setattr(lineage_module, "MAX_ROWS", 4)
    cut = lineage(world.platform, "acme", output, "up", depth=8)
    assert cut.truncated
    # The nearest nodes are kept (the walk is breadth-first), with the edges between them.
    assert {n.node_id for n in cut.nodes} < {n.node_id for n in whole.nodes}
    assert max(n.depth for n in cut.nodes) <= 2
    kept = {n.node_id for n in cut.nodes}
    assert all({e.from_node_id, e.to_node_id} <= kept for e in cut.edges)


def test_neo4j_gives_the_same_answer_as_the_sql_query(world: World, graph_uri: str) -> None:
    for tenant, start, direction, depth in CASES:
        rows = world.acme if tenant == "acme" else world.globex
        identifier = {
            "output": rows.output_atoms["Y"].hex(),
            "input": world.input_atom.hex(),
            "model": world.model.hex(),
            "inference": str(rows.inference_id),
        }[start]
        found = lineage(world.platform, tenant, identifier, direction, depth)  # type: ignore[arg-type]
        nodes, edges = ids(found)
        assert len(nodes) > 3, (tenant, start, direction)
        neo4j = neo4j_lineage(graph_uri, tenant, found.start, direction, depth)
        assert neo4j == (nodes, edges), (tenant, start, direction)
