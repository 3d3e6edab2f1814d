"""`/v1/inference/{id}/explain`, `/v1/lineage/{id}` and `/v1/streams/{id}` over inferences
whose rows went through the real pipeline (CDC → broker → sync worker → ledger)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient
from tests.integration.inference_rows import InferenceRows, InputRef, Step, insert_inference, rate
from tests.integration.sync.conftest import Source, drain

from hartonomous.config import Settings
from hartonomous.provenance import AtomicStream

from .conftest import IssueKey, bearer
from .pipeline import pipeline
from .problem_checks import problem

__all__ = ["pipeline"]

STEPS = (Step("onnx_session.create", 11.5), Step("onnx_session.run", 2.25, 6, 6))


@dataclass
class Run:
    acme: dict[str, str]
    globex: dict[str, str]
    rows: InferenceRows
    input_atom: bytes


@pytest.fixture
def run(pipeline: Source, issue_key: IssueKey) -> Run:
    acme = bearer(issue_key("acme", principal="alice"))
    globex = bearer(issue_key("globex"))
    job = pipeline.ingest("acme", 1, tag="input")
    atom, holding = pipeline.conn.execute(
        "SELECT atom_id, holding_id FROM holdings WHERE job_id = %s", (job,)
    ).fetchone() or (None, None)
    rows = insert_inference(
        pipeline.conn,
        "acme",
        principal_id="alice",
        inputs=[InputRef("text", bytes(atom), holding)],
        outputs=[("Y", b"\x00\x01output")],
        steps=STEPS,
        usage_units=Decimal("1.25"),
        attributes={"complexity": "premium"},
    )
    return Run(acme, globex, rows, bytes(atom))


def ledger_row(source: Source, rows: InferenceRows) -> tuple[str, ...]:
    row = source.conn.execute(
        "SELECT units, multiplier, total_dcu, unit_price, total_cost FROM billing_usage_ledger "
        "WHERE tenant_id = %s AND event_id = %s",
        (rows.tenant_id, f"inference:{rows.tenant_id}:{rows.inference_id}"),
    ).fetchone()
    assert row is not None
    return tuple(format(value, "f") for value in row)


def test_explain_shows_the_ledgers_numbers_once_the_worker_billed(
    api: TestClient, run: Run, pipeline: Source
) -> None:
    url = f"/v1/inference/{run.rows.inference_id}/explain"
    before = api.get(url, headers=run.acme)
    assert before.status_code == 200, before.text
    assert before.json()["cost"]["state"] == "not yet billed"
    pipeline.capture()
    drain(pipeline, Settings())
    rate(pipeline.conn, run.rows, 3, "ok, slow first call")
    pipeline.capture()
    drain(pipeline, Settings())
    body = api.get(url, headers=run.acme).json()
    cost = body["cost"]
    assert cost["state"] == "billed"
    assert (
        cost["units"],
        cost["multiplier"],
        cost["total_dcu"],
        cost["unit_price"],
        cost["total_cost"],
    ) == ledger_row(pipeline, run.rows)
    assert Decimal(cost["units"]) == Decimal("1.25")  # the row's usage_units
    assert Decimal(cost["multiplier"]) == Decimal("1.5")  # complexity premium
    assert (body["rating"], body["feedback"]) == (3, "ok, slow first call")
    assert [s["operation"] for s in body["steps"]] == ["onnx_session.create", "onnx_session.run"]
    assert [s["duration_ms"] for s in body["steps"]] == [11.5, 2.25]
    [used] = body["inputs"]
    assert used["atom_id"] == run.input_atom.hex()
    assert [s["source_uri"] for s in used["sources"]] == [
        str(pipeline.scalar("SELECT source_uri FROM holdings WHERE atom_id = %s", run.input_atom))
    ]
    assert used["sources"][0]["job_id"] is not None
    [output] = body["outputs"]
    assert output["atom_id"] == run.rows.output_atoms["Y"].hex()
    kinds = [s["kind"] for s in body["stream"]["segments"]]
    assert kinds == ["Input", "Control", "Telemetry", "Output"]
    assert body["model"] is None  # no model row given: a built-in task


def test_another_tenants_inference_and_stream_are_not_found(api: TestClient, run: Run) -> None:
    for url in (
        f"/v1/inference/{run.rows.inference_id}/explain",
        f"/v1/streams/{run.rows.stream_id}",
        f"/v1/streams/{run.rows.stream_id}?format=raw",
        f"/v1/lineage/{run.rows.inference_id}?direction=up",
    ):
        problem(api.get(url, headers=run.globex), 404)
    # An atom globex holds nothing of is not found either.
    problem(api.get(f"/v1/lineage/{run.input_atom.hex()}", headers=run.globex), 404)


def test_a_stream_decoded_and_raw(api: TestClient, run: Run) -> None:
    url = f"/v1/streams/{run.rows.stream_id}"
    decoded = api.get(url, headers=run.acme)
    assert decoded.status_code == 200, decoded.text
    body = decoded.json()
    assert body["size"] == len(run.rows.stream or b"")
    assert body["inference_id"] == str(run.rows.inference_id)
    segments = {s["kind"]: s for s in body["segments"]}
    # Binary payloads are Base64, JSON payloads text.
    assert segments["Output"]["encoding"] == "base64"
    assert base64.b64decode(segments["Output"]["payload"]) == b"\x00\x01output"
    assert segments["Input"]["encoding"] == "text"
    assert segments["Input"]["content_type"] == "application/json"
    assert segments["Output"]["metadata"] == '{"name": "Y"}'
    for raw in (
        api.get(url + "?format=raw", headers=run.acme),
        api.get(url, headers={**run.acme, "Accept": "application/octet-stream"}),
    ):
        assert raw.status_code == 200
        assert raw.headers["content-type"] == "application/octet-stream"
        assert raw.content == run.rows.stream
        assert str(AtomicStream.from_bytes(raw.content).stream_id) == body["stream_id"]
    # JSON asked for alongside the bytes: JSON wins.
    both = api.get(
        url, headers={**run.acme, "Accept": "application/json, application/octet-stream"}
    )
    assert both.headers["content-type"].startswith("application/json")


def test_lineage_route_walks_up_from_the_output(
    api: TestClient, run: Run, pipeline: Source
) -> None:
    pipeline.capture()
    drain(pipeline, Settings())
    output = run.rows.output_atoms["Y"].hex()
    answer = api.get(f"/v1/lineage/{output}?direction=up&depth=4", headers=run.acme)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    nodes = {n["node_id"]: n for n in body["nodes"]}
    assert nodes[f"inference:acme:{run.rows.inference_id}"]["depth"] == 1
    assert f"atom:{run.input_atom.hex()}" in nodes
    assert body["start"] == f"atom:{output}"
    problem(api.get(f"/v1/lineage/{output}?depth=0", headers=run.acme), 422)
