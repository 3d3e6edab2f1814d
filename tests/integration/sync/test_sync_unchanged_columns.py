"""An UPDATE that leaves a TOASTed column unchanged keeps the graph property it did not carry."""

from __future__ import annotations

import json
import secrets

from neo4j import GraphDatabase
from tests.integration.sync.conftest import Source, digest, drain

from hartonomous.config import Settings
from hartonomous.sync.rows import TEXT_PREVIEW_CHARACTERS


def queued_data(source: Source, table: str) -> list[dict[str, object]]:
    return [
        row[0]
        for row in source.conn.execute(
            "SELECT body->'data' FROM broker_messages WHERE body->>'table' = %s "
            "AND body->>'operation' = 'update' ORDER BY message_id",
            (table,),
        ).fetchall()
    ]


def neo4j_properties(uri: str, node_id: str) -> dict[str, object]:
    with GraphDatabase.driver(uri, auth=None) as driver:
        records, _, _ = driver.execute_query(
            "MATCH (n {node_id: $id}) RETURN properties(n) AS p", id=node_id
        )
    assert len(records) == 1
    return dict(records[0]["p"])


def test_an_atom_metadata_update_keeps_the_canonical_text_preview(
    source: Source, graph_uri: str
) -> None:
    # Random text does not compress: 64 KB is stored out of line (TOASTed).
    text = secrets.token_urlsafe(48 * 1024)[: 64 * 1024]
    atom = digest(text)
    source.conn.execute(
        "INSERT INTO atoms (atom_id, kind, modality, subtype, size_bytes, canonical_text) "
        "VALUES (%s, 'leaf', 'text', 'document', %s, %s)",
        (atom, len(text), text),
    )
    source.capture()
    settings = Settings.model_validate({"neo4j": {"uri": graph_uri}})
    assert drain(source, settings).dead_lettered == 0
    node_id = f"atom:{atom.hex()}"
    preview = text[:TEXT_PREVIEW_CHARACTERS]

    source.conn.execute(
        "UPDATE atoms SET metadata = %s WHERE atom_id = %s", (json.dumps({"k": 1}), atom)
    )
    source.capture()
    # The scenario is real: the update event does not carry the unchanged text.
    [data] = queued_data(source, "atoms")
    assert "canonical_text" not in data
    assert data["metadata"] == {"k": 1}
    assert drain(source, settings).dead_lettered == 0

    stored = source.scalar("SELECT properties FROM graph_nodes WHERE node_id = %s", node_id)
    assert stored["canonical_text"] == preview
    assert stored["metadata"] == {"k": 1}
    projected = neo4j_properties(graph_uri, node_id)
    assert projected["canonical_text"] == preview
    assert projected["metadata"] == '{"k":1}'

    # A value an update does carry, even NULL, is applied in both stores.
    source.conn.execute("UPDATE atoms SET canonical_text = NULL WHERE atom_id = %s", (atom,))
    source.capture()
    assert drain(source, settings).dead_lettered == 0
    stored = source.scalar("SELECT properties FROM graph_nodes WHERE node_id = %s", node_id)
    assert stored["canonical_text"] is None
    assert "canonical_text" not in neo4j_properties(graph_uri, node_id)


def test_a_tensor_update_keeps_the_long_name_it_did_not_carry(source: Source) -> None:
    name = "layers." + secrets.token_urlsafe(12 * 1024)
    model = digest("model-file")
    source.conn.execute(
        "INSERT INTO atoms (atom_id, kind, modality, subtype, size_bytes) "
        "VALUES (%s, 'leaf', 'model', 'safetensors', 100)",
        (model,),
    )
    source.conn.execute(
        "INSERT INTO models (atom_id, format, parameter_count, tensor_count) "
        "VALUES (%s, 'safetensors', 4, 1)",
        (model,),
    )
    source.conn.execute(
        "INSERT INTO model_tensors (model_atom_id, ordinal, name, dtype, shape, "
        "parameter_count, byte_length) VALUES (%s, 0, %s, 'F32', '{2,2}', 4, 16)",
        (model, name),
    )
    source.capture()
    assert drain(source, Settings()).dead_lettered == 0
    source.conn.execute(
        "UPDATE model_tensors SET dtype = 'F16', byte_length = 8 WHERE model_atom_id = %s",
        (model,),
    )
    source.capture()
    [data] = queued_data(source, "model_tensors")
    assert "name" not in data
    assert (
        drain(source, Settings()).dead_lettered == 0
    )  # before: dead-lettered, "column name is None"
    stored = source.scalar(
        "SELECT properties FROM graph_nodes WHERE node_id = %s", f"tensor:{model.hex()}:0"
    )
    assert stored["name"] == name
    assert stored["dtype"] == "F16"
    assert stored["byte_length"] == 8
