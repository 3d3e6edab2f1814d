"""`hartonomous worker`: the inference worker alone, once (`--once`) or serving until SIGTERM,
with its heartbeat."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import Engine, text
from tests.conftest import Cli

from hartonomous.inference.tasks import InferenceStatus, InferenceTask
from hartonomous.services import Platform
from hartonomous.services.inference import Submission, get, submit

HANG_GUARD_SECONDS = 120


def _embedding(sentence: str) -> Submission:
    return Submission(tenant_id="acme", task=InferenceTask.TEXT_EMBEDDING, input={"text": sentence})


def test_worker_once_runs_the_open_jobs(platform: Platform, cli: Cli) -> None:
    submitted = [submit(platform, _embedding(f"job {n}")) for n in range(2)]
    result = cli("--json", "worker", "--once")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {"ran": 2}
    for job in submitted:
        assert get(platform, "acme", job.inference_id).status is InferenceStatus.COMPLETED


def test_worker_serves_until_sigterm_and_beats(
    platform: Platform, engine: Engine, cli: Cli
) -> None:
    worker = subprocess.Popen(
        [sys.executable, "-m", "hartonomous", "--json", "worker"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli.env,
        cwd=cli.cwd,
    )
    try:
        assert worker.stdout is not None
        announced = json.loads(worker.stdout.readline())
        assert announced["running"] is True
        submitted = submit(platform, _embedding("served by the worker command"))
        deadline = time.monotonic() + HANG_GUARD_SECONDS
        while get(platform, "acme", submitted.inference_id).status is not InferenceStatus.COMPLETED:
            if time.monotonic() > deadline:
                pytest.fail("hang guard: the worker did not complete the job")
            time.sleep(0.1)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=HANG_GUARD_SECONDS) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    with engine.connect() as connection:
        states = (
            connection.execute(
                text("SELECT state FROM service_heartbeats WHERE service_name = 'inference-worker'")
            )
            .scalars()
            .all()
        )
    assert states == ["stopped"]


def test_waiting_with_no_worker_running_says_the_job_is_stuck(platform: Platform, cli: Cli) -> None:
    waited = cli(
        "infer",
        "text_embedding",
        "--tenant",
        "acme",
        "--text",
        "nobody runs me",
        "--wait",
        "--timeout",
        "0.5",
    )
    assert waited.exit_code == 1
    assert "is still pending after 0.5 s: is an inference worker running" in waited.stderr
    assert "text_embedding pending" in waited.stdout
