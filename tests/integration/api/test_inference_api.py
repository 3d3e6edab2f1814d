"""`/v1/inference`: 202 with the job's id and Location, the status read back, 404 across
tenants, feedback; all as the API role under row-level security (docs/inference.md)."""

from __future__ import annotations

import base64
import io
import json
import uuid

import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from tests.integration.inference.onnx_support import ingest, shipped

from hartonomous.security.roles import Role
from hartonomous.services import Platform
from hartonomous.services.inference import drain

from .conftest import IssueKey, bearer
from .data_api_support import wait_for_job


def test_submit_read_rate_and_cache_over_the_api(
    api: TestClient, platform: Platform, issue_key: IssueKey
) -> None:
    acme = bearer(issue_key("acme"))
    body = {
        "task": "text_embedding",
        "input": {"text": "hello over HTTP"},
        "attributes": {"tier": "gold"},
    }
    accepted = api.post("/v1/inference", json=body, headers=acme)
    assert accepted.status_code == 202, accepted.text
    job = accepted.json()
    assert job["status"] == "pending"
    assert (
        accepted.headers["location"] == job["status_url"] == f"/v1/inference/{job['inference_id']}"
    )

    pending = api.get(job["status_url"], headers=acme)
    assert pending.status_code == 200
    assert pending.json()["status"] == "pending"

    assert drain(platform) == 1
    done = api.get(job["status_url"], headers=acme).json()
    assert done["status"] == "completed", done
    assert len(done["output"]["vector"]) == 384
    assert done["usage_units"] == str(done["output"]["token_count"] / 1000).ljust(8, "0")
    assert done["attributes"] == {"tier": "gold"}
    assert [s["operation"] for s in done["steps"]] == ["embed"]

    # The same request again is answered at once (written as the API role).
    again = api.post("/v1/inference", json=body, headers=acme)
    assert again.status_code == 202
    assert again.json()["cache_hit"] is True
    assert again.json()["status"] == "completed"
    assert again.json()["cached_from"] == job["inference_id"]

    rated = api.post(
        f"{job['status_url']}/feedback", json={"rating": 4, "text": "useful"}, headers=acme
    )
    assert rated.status_code == 200, rated.text
    assert (rated.json()["rating"], rated.json()["feedback"]) == (4, "useful")
    assert api.get(job["status_url"], headers=acme).json()["rating"] == 4

    # Another tenant's key sees nothing of it: 404, never 403.
    globex = bearer(issue_key("globex"))
    assert api.get(job["status_url"], headers=globex).status_code == 404
    assert (
        api.post(f"{job['status_url']}/feedback", json={"rating": 1}, headers=globex).status_code
        == 404
    )
    assert api.get(f"/v1/inference/{uuid.uuid4()}", headers=acme).status_code == 404


def _onnx(inputs: dict[str, object]) -> dict[str, object]:
    return {"task": "onnx_run", "model": "ab" * 32, "input": {"inputs": inputs}}


def test_bad_requests_are_problems_naming_the_field(
    api: TestClient, platform: Platform, issue_key: IssueKey
) -> None:
    key = bearer(issue_key("acme", Role.DATA_SCIENTIST))
    cases = [
        ({"task": "classification", "input": {"text": "x", "k": "many"}}, 400, "input 'k'"),
        ({"task": "text_embedding", "input": {"texts": ["x"]}}, 400, "takes no input 'texts'"),
        ({"task": "text_embedding", "input": {"text": {"atom_id": "ab" * 32}}}, 400, "not found"),
        ({"task": "summarise", "input": {}}, 422, "task"),
        # Malformed tensors are refused at submission naming the tensor, not failed later.
        (_onnx({"x": {"dtype": "float33", "shape": [1], "data": [1]}}), 400, "input 'x': dtype"),
        (
            _onnx({"w": {"dtype": "float32", "shape": [2, 2], "data": [[1, 2], [3]]}}),
            400,
            "input 'w': data is ragged",
        ),
        (_onnx({"x": {"npy_base64": "bm90IG5weQ=="}}), 400, "input 'x': the bytes are not"),
        (_onnx({"x": {"npy_base64": "%%%"}}), 400, "input tensor 'x': npy_base64 is not Base64"),
        ({"task": "text_embedding", "input": {"text": "x"}, "extra": 1}, 422, "extra"),
    ]
    for body, status, said in cases:
        answer = api.post("/v1/inference", json=body, headers=key)
        assert answer.status_code == status, (body, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert said in answer.text, (body, answer.text)
    assert drain(platform) == 0  # nothing was queued


def test_feedback_needs_a_completed_inference(
    api: TestClient, platform: Platform, issue_key: IssueKey
) -> None:
    key = bearer(issue_key("acme"))
    failing = api.post(
        "/v1/inference", json={"task": "text_embedding", "input": {"text": "🙂"}}, headers=key
    ).json()
    url = failing["status_url"]
    assert api.post(f"{url}/feedback", json={"rating": 3}, headers=key).status_code == 409
    drain(platform)
    failed = api.get(url, headers=key).json()
    assert failed["status"] == "failed"
    assert "does not know" in failed["error"]
    refused = api.post(f"{url}/feedback", json={"rating": 3}, headers=key)
    assert refused.status_code == 409
    assert "failed" in refused.json()["detail"]
    out_of_range = api.post(f"{url}/feedback", json={"rating": 6}, headers=key)
    assert out_of_range.status_code == 422


def test_an_upload_labelled_over_the_api_is_classified_by(
    api: TestClient, platform: Platform, issue_key: IssueKey, engine: Engine
) -> None:
    key = bearer(issue_key("acme"))
    for label, name, content in (
        ("animals", "cat.txt", b"The cat slept on the sofa all afternoon."),
        ("money", "bank.txt", b"The bank raised its interest rates on savings."),
    ):
        answer = api.post(
            f"/v1/ingest?label={label}",
            headers=key,
            files=[("files", (name, content, "text/plain"))],
        )
        assert answer.status_code == 202, answer.text
        job = wait_for_job(
            api, key["Authorization"].removeprefix("Bearer "), answer.json()["job_id"]
        )
        assert job["status"] == "completed", job
    with engine.connect() as connection:
        labels = dict(
            connection.execute(
                text(
                    "SELECT source_uri, metadata ->> 'label' FROM holdings WHERE tenant_id = 'acme'"
                )
            ).all()
        )
    assert labels == {"cat.txt": "animals", "bank.txt": "money"}
    refused = api.post("/v1/ingest?label=%0A", headers=key, files=[("files", ("x.txt", b"x"))])
    assert refused.status_code == 422
    accepted = api.post(
        "/v1/inference",
        json={"task": "classification", "input": {"text": "a kitten on the couch", "k": 1}},
        headers=key,
    ).json()
    drain(platform)
    done = api.get(accepted["status_url"], headers=key).json()
    assert done["output"]["label"] == "animals", done


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def test_onnx_run_with_npy_files_over_multipart(
    api: TestClient, platform: Platform, issue_key: IssueKey, engine: Engine
) -> None:
    key = bearer(issue_key("acme"))
    model = ingest(engine, "acme", shipped("sigmoid.onnx"))["sigmoid.onnx"]
    x = np.random.default_rng(3).standard_normal((3, 4, 5)).astype(np.float32)
    request = json.dumps({"task": "onnx_run", "model": model, "input": {}})
    accepted = api.post(
        "/v1/inference/upload",
        headers=key,
        data={"request": request},
        files=[("files", ("x.npy", _npy(x), "application/x-npy"))],
    )
    assert accepted.status_code == 202, accepted.text
    job = accepted.json()
    assert accepted.headers["location"] == job["status_url"]
    assert drain(platform) == 1
    done = api.get(job["status_url"], headers=key).json()
    assert done["status"] == "completed", done
    (output,) = done["output"]["outputs"]
    assert output["shape"] == [3, 4, 5]
    assert np.allclose(output["values"], 1 / (1 + np.exp(-x)), atol=1e-6)
    # The file is stored as the atom npy_base64 would make: the same request, a cache hit.
    again = api.post(
        "/v1/inference",
        headers=key,
        json={
            "task": "onnx_run",
            "model": model,
            "input": {"inputs": {"x": {"npy_base64": base64.b64encode(_npy(x)).decode()}}},
        },
    )
    assert again.status_code == 202, again.text
    assert again.json()["cached_from"] == job["inference_id"]


def test_bad_multipart_inference_requests_are_problems(
    api: TestClient, platform: Platform, issue_key: IssueKey
) -> None:
    key = bearer(issue_key("acme"))
    request = json.dumps({"task": "onnx_run", "model": "ab" * 32, "input": {}})
    npy = _npy(np.zeros(3, dtype=np.float32))
    cases: list[tuple[dict[str, str], list[tuple[str, tuple[str, bytes]]], int, str]] = [
        ({"request": request}, [("files", ("x.bin", npy))], 400, "name each tensor file"),
        ({"request": request}, [("files", ("x.npy", b"not npy"))], 400, "input 'x': the bytes"),
        ({}, [("files", ("x.npy", npy))], 400, "as the text field 'request'"),
        ({"request": "{"}, [("files", ("x.npy", npy))], 400, "'request' is not a valid"),
        # The JSON inside the form is read as strictly as a JSON body (api/middleware.py).
        (
            {"request": '{"task": "onnx_run", "model": NaN, "input": {}}'},
            [("files", ("x.npy", npy))],
            400,
            "'request' is not valid JSON: NaN is not a JSON number at character 30",
        ),
        (
            {"request": '{"task": "onnx_run", "task": "onnx_run", "input": {}}'},
            [("files", ("x.npy", npy))],
            400,
            "'request' is not valid JSON: duplicate key 'task' in body at character 21",
        ),
        (
            {"request": json.dumps({"task": "onnx_run", "input": {}, "extra": 1})},
            [("files", ("x.npy", npy))],
            400,
            "extra: Extra inputs are not permitted",
        ),
        ({"request": request, "other": "1"}, [("files", ("x.npy", npy))], 400, "'other'"),
        (
            {"request": request},
            [("files", ("x.npy", npy)), ("files", ("x.npy", npy))],
            400,
            "given by two files",
        ),
        # The tensor is named once: as a file and inline too is refused.
        (
            {
                "request": json.dumps(
                    {
                        "task": "onnx_run",
                        "model": "ab" * 32,
                        "input": {"inputs": {"x": {"atom_id": "cd" * 32}}},
                    }
                )
            },
            [("files", ("x.npy", npy))],
            400,
            "given twice",
        ),
    ]
    for data, files, status, said in cases:
        answer = api.post("/v1/inference/upload", headers=key, data=data, files=files)
        assert answer.status_code == status, (data, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert said in answer.text, (data, answer.text)
    assert drain(platform) == 0  # nothing was queued
