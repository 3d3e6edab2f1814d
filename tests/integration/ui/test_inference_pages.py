"""Inference pages in-process: the tenant's requests newest first, paginated, the tenant's
only; one request's status and explanation (inputs and sources, steps, outputs, stream,
cost); another tenant's request a 404."""

from __future__ import annotations

import re
from decimal import Decimal

from fastapi.testclient import TestClient
from tests.integration.api.conftest import IssueKey
from tests.integration.api.pipeline import Source, pipeline
from tests.integration.inference_rows import InferenceRows, InputRef, Step, insert_inference

from hartonomous.security.roles import Role
from hartonomous.ui.pages.inference import HISTORY_PAGE

from .conftest import sign_in

__all__ = ["pipeline"]

_LINK = re.compile(r'href="/ui/inference/([0-9a-f-]{36})"')


def acme_inference(pipeline: Source) -> InferenceRows:
    """A completed onnx_run of acme (principal alice) over a held text atom, with a stream."""
    job = pipeline.ingest("acme", 1, tag="input")
    atom, holding = pipeline.conn.execute(
        "SELECT atom_id, holding_id FROM holdings WHERE job_id = %s", (job,)
    ).fetchone() or (None, None)
    return insert_inference(
        pipeline.conn,
        "acme",
        principal_id="alice",
        inputs=[InputRef("text", bytes(atom), holding)],
        outputs=[("Y", b"\x00\x01output")],
        steps=(Step("onnx_session.create", 11.5), Step("onnx_session.run", 2.25, 6, 6)),
        usage_units=Decimal("1.25"),
    )


def test_an_inference_shows_its_status_and_explanation_to_its_tenant_only(
    client: TestClient, issue_key: IssueKey, pipeline: Source
) -> None:
    sign_in(client, issue_key("acme", Role.USER))
    done = acme_inference(pipeline)
    failed = insert_inference(pipeline.conn, "acme", status="failed")
    history = client.get("/ui/inference").text
    assert _LINK.findall(history) == [str(failed.inference_id), str(done.inference_id)]
    page = client.get(f"/ui/inference/{done.inference_id}").text
    assert 'id="inference-state">completed<' in page
    steps = page.split('id="inference-steps"')[1].split("</table>")[0]
    assert re.findall(r"<tr><td>(\d+)</td><td>([\w.]+)</td>", steps) == [
        ("1", "onnx_session.create"),
        ("2", "onnx_session.run"),
    ]
    assert "/ui/holdings/" in page.split('id="inference-inputs"')[1]  # the input's source
    stream = page.split('id="inference-stream"')[1].split("</table>")[0]
    assert f"Stream {done.stream_id}" in stream
    assert [kind for kind in ("Input", "Output") if f"<td>{kind}</td>" in stream] == [
        "Input",
        "Output",
    ]
    assert 'id="inference-cost">not yet billed<' in page  # the sync worker has not run
    assert "hx-trigger" not in page  # finished: the status is not polled
    bad = client.get(f"/ui/inference/{failed.inference_id}").text
    assert re.search(r'id="inference-error">input X: expected shape', bad)
    stranger = TestClient(client.app)
    sign_in(stranger, issue_key("globex", Role.USER))
    assert stranger.get(f"/ui/inference/{done.inference_id}").status_code == 404
    assert _LINK.findall(stranger.get("/ui/inference").text) == []
    assert stranger.get("/ui/inference/not-a-uuid").status_code == 400


def test_the_inference_history_is_paginated_and_a_running_request_refreshes(
    client: TestClient, issue_key: IssueKey, pipeline: Source
) -> None:
    sign_in(client, issue_key("acme", Role.USER))
    pipeline.conn.execute(
        "INSERT INTO inference_requests (tenant_id, task, input_hash) SELECT 'acme', "
        f"'text_embedding', sha256(i::text::bytea) FROM generate_series(1, {HISTORY_PAGE + 1}) i"
    )
    first = client.get("/ui/inference").text
    shown = _LINK.findall(first)
    cursor = re.search(r'href="/ui/inference\?cursor=([^"]+)"', first)
    assert cursor
    rest = _LINK.findall(client.get(f"/ui/inference?cursor={cursor.group(1)}").text)
    assert (len(shown), len(rest), len(set(shown) | set(rest))) == (
        HISTORY_PAGE,
        1,
        HISTORY_PAGE + 1,
    )
    pending = client.get(f"/ui/inference/{rest[0]}").text
    assert 'id="inference-state">pending<' in pending
    assert 'hx-trigger="every 2s"' in pending
    assert client.get("/ui/inference?cursor=forged.x").status_code == 400
    assert client.get("/ui/inference?cursor=").status_code == 400  # empty: refused, not page 1
