"""Inferences through the real pipeline (CDC → broker → sync): graph nodes and edges, and one
ledger row per completed inference however many events carry it completed."""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import Engine
from tests.integration.inference_rows import InputRef, insert_inference, rate
from tests.integration.sync.conftest import Source, digest, drain

from hartonomous.config import Settings
from hartonomous.messaging import OutgoingMessage
from hartonomous.messaging.broker import Broker
from hartonomous.messaging.dead_letters import ReplaySelection, replay
from hartonomous.services import Platform
from hartonomous.services.provenance import explain_inference
from hartonomous.sync.maintenance import repair

BILLED = "billed:neo4j_sync.inference_completed"
ALREADY = "already_billed:neo4j_sync.inference_completed"
ATTRIBUTES = {"generation": "image", "provenance": "audit_trail", "usage_units": "999"}


def counters(source: Source) -> dict[str, int]:
    return dict(source.conn.execute("SELECT counter, count FROM sync_counters").fetchall())


def ledger(source: Source) -> list[tuple[str, Decimal, Decimal, Decimal, Decimal, str]]:
    return [
        (str(r[0]), r[1], r[2], r[3], r[4], str(r[5]))
        for r in source.conn.execute(
            "SELECT event_id, units, multiplier, total_dcu, total_cost, operation "
            "FROM billing_usage_ledger WHERE operation = 'neo4j_sync.inference_completed'"
        ).fetchall()
    ]


def held_atom(source: Source, tenant: str) -> tuple[bytes, uuid.UUID]:
    job = source.ingest(tenant, 1, tag="input")
    row = source.conn.execute(
        "SELECT atom_id, holding_id FROM holdings WHERE tenant_id = %s AND job_id = %s",
        (tenant, job),
    ).fetchone()
    assert row is not None
    return bytes(row[0]), row[1]


def model_atom(source: Source) -> bytes:
    """A model row (shared) with two tensors, as model ingestion writes them."""
    atom = digest("model-file")
    source.conn.execute(
        "INSERT INTO atoms (atom_id, kind, modality, size_bytes) VALUES (%s, 'leaf', 'model', 10)",
        (atom,),
    )
    source.conn.execute(
        "INSERT INTO models (atom_id, format, parameter_count, tensor_count, dtypes) "
        "VALUES (%s, 'onnx', 6, 2, '{\"float32\": 2}')",
        (atom,),
    )
    for ordinal in range(2):
        source.conn.execute(
            "INSERT INTO model_tensors (model_atom_id, ordinal, name, dtype, shape, "
            "parameter_count, byte_length) VALUES (%s, %s, %s, 'float32', '{3}', 3, 12)",
            (atom, ordinal, f"w{ordinal}"),
        )
    return atom


def test_a_completed_inference_becomes_nodes_and_edges_and_one_ledger_row(
    source: Source,
) -> None:
    source.tenant("acme", "alice")
    source.tenant("globex")
    atom, holding = held_atom(source, "acme")
    model = model_atom(source)
    rows = insert_inference(
        source.conn,
        "acme",
        principal_id="alice",
        model_atom_id=model,
        inputs=[InputRef("X", atom, holding)],
        outputs=[("Y", b"output bytes")],
        usage_units=Decimal("0.5"),
        attributes=ATTRIBUTES,
    )
    source.capture()
    drain(source, Settings())
    node = f"inference:acme:{rows.inference_id}"
    properties = source.scalar("SELECT properties FROM graph_nodes WHERE node_id = %s", node)
    assert {k: properties[k] for k in ("task", "status", "cache_hit", "usage_units")} == {
        "task": "onnx_run",
        "status": "completed",
        "cache_hit": False,
        "usage_units": "0.500000",
    }
    assert properties["model"] == model.hex()
    stream = f"stream:acme:{rows.stream_id}"
    stream_properties = source.scalar(
        "SELECT properties FROM graph_nodes WHERE node_id = %s AND label = 'GenerationStream'",
        stream,
    )
    assert stream_properties["size"] == len(rows.stream or b"")
    assert "stream" not in stream_properties  # never the bytes
    edges = {
        (r[0], r[1], r[2])
        for r in source.conn.execute(
            "SELECT relationship, from_node_id, to_node_id FROM graph_edges "
            "WHERE from_node_id = %(n)s OR to_node_id = %(n)s",
            {"n": node},
        ).fetchall()
    }
    output = rows.output_atoms["Y"]
    assert edges == {
        ("OWNS", "tenant:acme", node),
        ("REQUESTED", "principal:acme:alice", node),
        ("USED_MODEL", node, f"model:{model.hex()}"),
        ("USED_INPUT", node, f"atom:{atom.hex()}"),
        ("PRODUCED", node, f"atom:{output.hex()}"),
        ("GENERATED", node, stream),
    }
    weight, used = source.conn.execute(
        "SELECT (SELECT properties->>'weight' FROM graph_edges WHERE relationship = 'USED_MODEL'),"
        " (SELECT properties FROM graph_edges WHERE relationship = 'USED_INPUT')"
    ).fetchone() or (None, None)
    assert weight == "1.0"
    assert used["name"] == "X"
    assert used["ordinal"] == 0
    # Units are the row's usage_units (not the caller's "usage_units" attribute), the
    # multiplier the request's attributes: image 3.0 times audit_trail 1.25.
    assert ledger(source) == [
        (
            f"inference:acme:{rows.inference_id}",
            Decimal("0.500000"),
            Decimal("3.750000"),
            Decimal("0.075000"),
            Decimal("0.000006"),
            "neo4j_sync.inference_completed",
        )
    ]
    # Feedback updates the row (still completed): not billed again.
    rate(source.conn, rows, 4, "good")
    source.capture()
    drain(source, Settings())
    assert len(ledger(source)) == 1
    assert (
        source.scalar("SELECT properties->>'rating' FROM graph_nodes WHERE node_id = %s", node)
        == "4"
    )
    counted = counters(source)
    assert counted[BILLED] == 1
    assert counted[ALREADY] == 1  # the rating update's attempt found the bill
    # The other tenant's inference is its own bill and its own node.
    other = insert_inference(source.conn, "globex", outputs=[("Y", b"output bytes")])
    source.capture()
    drain(source, Settings())
    assert len(ledger(source)) == 2
    assert (
        source.scalar(
            "SELECT tenant_id FROM graph_nodes WHERE node_id = %s",
            f"inference:globex:{other.inference_id}",
        )
        == "globex"
    )


def test_redelivered_and_recaptured_completion_events_bill_once(source: Source) -> None:
    source.tenant("acme")
    rows = insert_inference(source.conn, "acme", outputs=[("Y", b"y")])
    source.capture()
    queued = source.conn.execute(
        "SELECT body, conversation_id FROM broker_messages "
        "WHERE body->>'table' = 'inference_requests' ORDER BY message_id"
    ).fetchall()
    assert drain(source, Settings()).billed == 1
    broker = Broker(Settings().message_broker)
    # The same events again (a redelivery), and the same changes under new CloudEvent ids
    # (as a change capture that re-read the WAL would produce).
    recaptured = [dict(body, id=f"{body['id']}-again") for body, _ in queued]
    broker.send_batch(
        source.conn,
        [OutgoingMessage(body, conversation) for body, conversation in queued]
        + [
            OutgoingMessage(body, conversation)
            for body, (_, conversation) in zip(recaptured, queued, strict=True)
        ],
    )
    again = drain(source, Settings())
    assert again.billed == 0
    assert [row[0] for row in ledger(source)] == [f"inference:acme:{rows.inference_id}"]
    metadata = source.scalar("SELECT metadata FROM billing_usage_ledger")
    # The ledger keeps which CloudEvent billed the inference.
    assert metadata["cloudevent_id"] in {body["id"] for body, _ in queued}
    assert counters(source)[BILLED] == 1


def test_a_cache_hit_is_not_billed(source: Source) -> None:
    """It computed nothing again (usage_units 0); billing it would charge one unit."""
    source.tenant("acme")
    insert_inference(source.conn, "acme", outputs=[("Y", b"y")], cache_hit=True)
    source.capture()
    drain(source, Settings())
    assert ledger(source) == []
    assert BILLED not in counters(source)


def test_replayed_dead_letters_bill_an_inference_inserted_completed_once(source: Source) -> None:
    source.tenant("acme")
    rows = insert_inference(source.conn, "acme", outputs=[("Y", b"y")])
    rate(source.conn, rows, 5, "fast")
    source.capture()
    banned = Settings.model_validate({"security": {"banned_tenants": ["acme"]}})
    drain(source, banned)
    letters = [
        r[0]
        for r in source.conn.execute(
            "SELECT dead_letter_id FROM message_dead_letters "
            "WHERE body->>'table' = 'inference_requests' ORDER BY dead_letter_id"
        ).fetchall()
    ]
    # The insert (pending), the fixture's updates filling it in, the rating update.
    completed = source.conn.execute(
        "SELECT count(*) FROM message_dead_letters WHERE body->>'table' = 'inference_requests' "
        "AND body->'data'->>'status' = 'completed'"
    ).fetchone()
    assert completed is not None
    assert len(letters) > completed[0] >= 2
    assert ledger(source) == []
    broker = Broker(Settings().message_broker)
    for letter in [*letters, *letters]:
        replay(source.conn, broker, ReplaySelection(dead_letter_id=letter))
    drain(source, Settings())
    assert [row[0] for row in ledger(source)] == [f"inference:acme:{rows.inference_id}"]
    counted = counters(source)
    assert counted[BILLED] == 1
    # Each completed event delivered twice: one delivery billed, every other one skipped.
    assert counted[ALREADY] == 2 * completed[0] - 1


def test_a_failed_inference_is_counted_not_billed(source: Source, engine: Engine) -> None:
    source.tenant("acme")
    rows = insert_inference(source.conn, "acme", status="failed")
    source.capture()
    drain(source, Settings())
    assert ledger(source) == []
    explained = explain_inference(Platform(engine, Settings(), ""), "acme", str(rows.inference_id))
    assert explained.cost.state == "not billed"
    assert explained.error == "input X: expected shape [3, 2], given [2, 2]"
    # Its stream: the Input and the error, nothing more.
    assert explained.stream is not None
    assert [s.kind for s in explained.stream.segments] == ["Input", "Control"]
    # Found by its inference when the request does not name it.
    source.conn.execute(
        "UPDATE inference_requests SET stream_id = NULL WHERE inference_id = %s",
        (rows.inference_id,),
    )
    again = explain_inference(Platform(engine, Settings(), ""), "acme", str(rows.inference_id))
    assert again.stream == explained.stream
    counted = counters(source)
    assert BILLED not in counted
    # pending insert, in_progress update, failed update
    assert counted["unbilled:inference_requests.insert"] == 1
    assert counted["unbilled:inference_requests.update"] == 2
    assert (
        source.scalar(
            "SELECT properties->>'status' FROM graph_nodes WHERE node_id = %s",
            f"inference:acme:{rows.inference_id}",
        )
        == "failed"
    )


def test_deleting_an_inference_removes_its_nodes_and_edges(source: Source) -> None:
    source.tenant("acme", "alice")
    atom, holding = held_atom(source, "acme")
    rows = insert_inference(
        source.conn,
        "acme",
        principal_id="alice",
        inputs=[InputRef("X", atom, holding)],
        outputs=[("Y", b"y")],
    )
    source.capture()
    drain(source, Settings())
    node = f"inference:acme:{rows.inference_id}"
    assert source.scalar("SELECT count(*) FROM graph_edges WHERE from_node_id = %s", node) == 3
    source.conn.execute(
        "DELETE FROM inference_requests WHERE tenant_id = 'acme' AND inference_id = %s",
        (rows.inference_id,),
    )
    source.capture()
    drain(source, Settings())
    assert (
        source.scalar(
            "SELECT count(*) FROM graph_nodes WHERE label IN ('Inference', 'GenerationStream')"
        )
        == 0
    )
    assert (
        source.scalar(
            "SELECT count(*) FROM graph_edges WHERE from_node_id = %s OR to_node_id = %s",
            node,
            node,
        )
        == 0
    )


def test_events_applied_after_the_inference_was_deleted_write_nothing(source: Source) -> None:
    """Deletes win: the request's delete is captured before its earlier events are synced."""
    source.tenant("acme")
    rows = insert_inference(source.conn, "acme", outputs=[("Y", b"y")])
    source.capture()
    # Hold the inference's events back (as a throttle would) while it is deleted.
    source.conn.execute(
        "DELETE FROM inference_requests WHERE tenant_id = 'acme' AND inference_id = %s",
        (rows.inference_id,),
    )
    drain(source, Settings())
    assert (
        source.scalar(
            "SELECT count(*) FROM graph_nodes WHERE label IN ('Inference', 'GenerationStream')"
        )
        == 0
    )
    touching = "from_node_id ~ '^(inference|stream):' OR to_node_id ~ '^(inference|stream):'"
    assert source.scalar(f"SELECT count(*) FROM graph_edges WHERE {touching}") == 0
    assert counters(source)["skipped:source_deleted:Inference"] >= 1


def test_graph_repair_rebuilds_the_inference_graph_the_worker_wrote(source: Source) -> None:
    source.tenant("acme", "alice")
    atom, holding = held_atom(source, "acme")
    insert_inference(
        source.conn,
        "acme",
        principal_id="alice",
        model_atom_id=model_atom(source),
        inputs=[InputRef("X", atom, holding)],
        outputs=[("Y", b"y")],
    )
    source.capture()
    drain(source, Settings())
    snapshot = (
        "SELECT node_id, properties FROM graph_nodes "
        "WHERE label IN ('Inference', 'GenerationStream') ORDER BY node_id"
    )
    nodes = source.conn.execute(snapshot).fetchall()
    edges = source.conn.execute("SELECT edge_id FROM graph_edges ORDER BY edge_id").fetchall()
    report = repair(source.conn)
    assert (report.removed_nodes, report.removed_edges) == (0, 0)
    assert report.rows["inference_requests"] == 1
    assert report.rows["inference_atoms"] == 2
    assert report.rows["generation_streams"] == 1
    assert source.conn.execute("SELECT edge_id FROM graph_edges ORDER BY edge_id").fetchall() == (
        edges
    )
    assert source.conn.execute(snapshot).fetchall() == nodes
