"""Each text task end to end through `up`'s own inference worker (a real `up` process), over
HTTP and through the CLI; `/health/ready` expects the worker's heartbeat."""

from __future__ import annotations

import base64
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime
import pytest
from sqlalchemy import Engine, text
from tests.conftest import Cli
from tests.integration.api.conftest import UNLIMITED
from tests.integration.test_up import RunningUp

from hartonomous.security import create_api_key, ensure_principal

from .conftest import Ingest
from .onnx_support import add_tenant, npy, shipped
from .onnx_support import ingest as ingest_files

HANG_GUARD_SECONDS = 120


@pytest.fixture
def running_up(cli: Cli, data_dir: Path) -> Iterator[RunningUp]:
    # The tests poll (the default limit is 100 requests a minute, and a 429 waits up to a
    # minute): as in the API tests, the tenant's limit is out of the way.
    env = {**cli.env, "HARTONOMOUS_SECURITY__RATE_LIMITS": json.dumps([UNLIMITED])}
    up = RunningUp(env, data_dir)
    yield up
    assert up.stop(signal.SIGTERM) == 0


def _key(engine: Engine, tenant: str) -> dict[str, str]:
    with engine.begin() as connection:
        ensure_principal(connection, tenant, "alice", "Alice", "user")
        token = create_api_key(connection, tenant, "alice", "inference tests")
    return {"Authorization": f"Bearer {token}"}


def _get(url: str, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    """GET as a polite client polls: a 429 waits its Retry-After (the default limit is 100
    requests a minute) and asks again."""
    while True:
        answer = httpx.get(url, headers=headers, params=params, timeout=30)
        if answer.status_code != 429:
            assert answer.status_code == 200, answer.text
            return dict(answer.json())
        time.sleep(int(answer.headers["retry-after"]))


def _outcome(up: RunningUp, headers: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    accepted = httpx.post(f"{up.url}/v1/inference", json=body, headers=headers, timeout=30)
    assert accepted.status_code == 202, accepted.text
    url = up.url + accepted.headers["location"]
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while True:
        state = _get(url, headers)
        if state["status"] in ("completed", "failed"):
            return dict(state)
        if time.monotonic() > deadline:
            pytest.fail(f"hang guard: {body['task']} still {state['status']}")
        time.sleep(0.1)


def test_every_text_task_runs_in_ups_worker(
    platform: Any, engine: Engine, ingest: Ingest, running_up: RunningUp, cli: Cli
) -> None:
    ingest("acme", {"cat.txt": "The cat slept on the sofa all afternoon."}, label="animals")
    ingest("acme", {"bank.txt": "The bank raised its interest rates on savings."}, label="money")
    headers = _key(engine, "acme")

    ready = httpx.get(f"{running_up.url}/health/ready", timeout=30).json()
    assert "inference-worker" in {s["service"] for s in ready["services"]}

    embedded = _outcome(
        running_up, headers, {"task": "text_embedding", "input": {"text": "a sleepy cat"}}
    )
    assert embedded["status"] == "completed", embedded
    assert embedded["output"]["dimension"] == 384
    found = _outcome(
        running_up, headers, {"task": "semantic_search", "input": {"text": "sleepy cat", "k": 1}}
    )
    assert found["status"] == "completed", found
    assert "cat" in found["output"]["hits"][0]["text"]
    classified = _outcome(
        running_up,
        headers,
        {"task": "classification", "input": {"text": "my kitten naps on the couch", "k": 2}},
    )
    assert classified["status"] == "completed", classified
    assert classified["output"]["label"] == "animals"

    # The CLI waits for the same worker; then reads and rates the inference.
    waited = cli(
        "infer", "text_embedding", "--tenant", "acme", "--text", "from the CLI", "--wait", "--json"
    )
    assert waited.exit_code == 0, waited.stderr
    view = json.loads(waited.stdout)
    assert view["status"] == "completed"
    assert view["usage_units"] == str(view["output"]["token_count"] / 1000).ljust(8, "0")
    rated = cli(
        "infer",
        "feedback",
        view["inference_id"],
        "--tenant",
        "acme",
        "--rating",
        "5",
        "--text",
        "spot on",
    )
    assert rated.exit_code == 0, rated.stderr
    status = cli("infer", "status", view["inference_id"], "--tenant", "acme")
    assert status.exit_code == 0, status.stderr
    assert "rating 5: spot on" in status.stdout
    failed = cli("infer", "text_embedding", "--tenant", "acme", "--text", "🙂", "--wait")
    assert failed.exit_code == 1
    assert "does not know" in failed.stdout
    refused = cli("infer", "classification", "--tenant", "acme", "--text", "x", "-k", "0")
    assert refused.exit_code == 2
    assert "input 'k' must be an integer in 1..100, got 0" in refused.stderr


def test_onnx_run_in_ups_worker_is_billed_explained_and_traced_to_model_and_input(
    engine: Engine, running_up: RunningUp
) -> None:
    """onnx_run through `up`'s worker; `up`'s change capture and sync worker then bill it, and
    explain and lineage answer from what they projected."""
    tenant = add_tenant(engine, "acme")
    model_path = shipped("sigmoid.onnx")
    model_id = ingest_files(engine, tenant, model_path)["sigmoid.onnx"]
    headers = _key(engine, tenant)
    x = np.linspace(-3, 3, 60, dtype=np.float32).reshape(3, 4, 5)
    body = {
        "task": "onnx_run",
        "model": model_id,
        "input": {"inputs": {"x": {"npy_base64": base64.b64encode(npy(x)).decode()}}},
        "attributes": {"generation": "standard"},
    }
    done = _outcome(running_up, headers, body)
    assert done["status"] == "completed", done
    (output,) = done["output"]["outputs"]
    expected = onnxruntime.InferenceSession(str(model_path)).run(None, {"x": x})[0]
    np.testing.assert_allclose(np.asarray(output["values"], dtype=np.float32), expected)
    output_atom = done["output"]["output_atoms"][output["name"]]

    explain_url = f"{running_up.url}/v1/inference/{done['inference_id']}/explain"
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while (explained := _get(explain_url, headers))["cost"]["state"] != "billed":
        if time.monotonic() > deadline:
            pytest.fail(f"hang guard: never billed: {explained['cost']}")
        time.sleep(0.5)
    cost = explained["cost"]
    assert cost["operation"] == "neo4j_sync.inference_completed"
    assert cost["units"] == done["usage_units"]
    with engine.connect() as connection:
        billed = connection.execute(
            text(
                "SELECT units::text, total_dcu::text, total_cost::text FROM billing_usage_ledger "
                "WHERE event_id = :key"
            ),
            {"key": f"inference:{tenant}:{done['inference_id']}"},
        ).one()
    assert (cost["units"], cost["total_dcu"], cost["total_cost"]) == tuple(billed)
    assert explained["model"]["model_id"] == model_id
    assert [step["operation"] for step in explained["steps"]][-1] == "run"

    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while True:
        traced = _get(
            f"{running_up.url}/v1/lineage/{output_atom}", headers, direction="up", depth=8
        )
        labels = {node["label"] for node in traced["nodes"]}
        # sigmoid.onnx has no initializers, so no Tensor node: waiting for one ran every time
        # to the hang guard (120 s). Lineage reaching a model's tensors:
        # tests/integration/sync/test_lineage.py, with a model that has them.
        if {"Inference", "Model"} <= labels or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    nodes = {node["node_id"] for node in traced["nodes"]}
    assert f"inference:{tenant}:{done['inference_id']}" in nodes
    assert f"model:{model_id}" in nodes
    held = {
        str(edge["properties"].get("source_uri"))
        for edge in traced["edges"]
        if edge["relationship"] == "OWNS"
    }
    # The input's file: the .npy the caller sent, held by the tenant for this inference.
    assert f"inference:{done['inference_id']}/input/x" in held
    # ... and the model's file, ingested from disk.
    assert any(uri.endswith("sigmoid.onnx") for uri in held)
