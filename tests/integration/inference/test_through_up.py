"""Each text task end to end through `up`'s own inference worker (a real `up` process), over
HTTP and through the CLI; `/health/ready` expects the worker's heartbeat."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from tests.conftest import Cli
from tests.integration.test_up import RunningUp

from hartonomous.security import create_api_key, ensure_principal

from .conftest import Ingest

HANG_GUARD_SECONDS = 120


@pytest.fixture
def running_up(cli: Cli, data_dir: Path) -> Iterator[RunningUp]:
    up = RunningUp(cli.env, data_dir)
    yield up
    assert up.stop(signal.SIGTERM) == 0


def _key(engine: Engine, tenant: str) -> dict[str, str]:
    with engine.begin() as connection:
        ensure_principal(connection, tenant, "alice", "Alice", "user")
        token = create_api_key(connection, tenant, "alice", "inference tests")
    return {"Authorization": f"Bearer {token}"}


def _outcome(up: RunningUp, headers: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    accepted = httpx.post(f"{up.url}/v1/inference", json=body, headers=headers, timeout=30)
    assert accepted.status_code == 202, accepted.text
    url = up.url + accepted.headers["location"]
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while True:
        state = httpx.get(url, headers=headers, timeout=30).json()
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
