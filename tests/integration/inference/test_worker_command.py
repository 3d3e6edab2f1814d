"""`hartonomous worker`: the inference worker alone, once (`--once`) or serving until SIGTERM,
with its heartbeat."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from tests.conftest import Cli

from hartonomous.inference.tasks import InferenceStatus, InferenceTask
from hartonomous.services import Platform
from hartonomous.services import inference as inference_service
from hartonomous.services.inference import InferenceView, Submission, drain, get, submit

from .conftest import counts

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
    worker = cli.spawn("--json", "worker", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
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
    # The id it shows names a queued job (made durable before it was shown) that a worker runs.
    shown = uuid.UUID(waited.stdout.split()[1].rstrip(":"))
    assert get(platform, "acme", shown).status is InferenceStatus.PENDING
    assert drain(platform) == 1
    assert get(platform, "acme", shown).status is InferenceStatus.COMPLETED


def test_a_job_submitted_and_waited_on_ends_with_its_request_and_outcome_stored(
    platform: Platform, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `infer --wait`'s call: the submission's commit does not wait for the WAL flush, so the
    # caller is told only by the outcome's (durable) commit: its notice ends the wait.
    monkeypatch.setattr(inference_service, "_RECHECK_SECONDS", 3600.0)
    for sentence, outcome in (
        ("submitted and waited on", InferenceStatus.COMPLETED),
        ("🙂", InferenceStatus.FAILED),
    ):
        before = counts(engine)
        waited: list[InferenceView] = []
        waiter = threading.Thread(
            target=lambda s=sentence, into=waited: into.append(
                inference_service.submit_and_wait(platform, _embedding(s), timeout_seconds=3600)
            )
        )
        waiter.start()
        deadline = time.monotonic() + HANG_GUARD_SECONDS
        while drain(platform) == 0:  # until the waiter's submission is queued
            assert time.monotonic() < deadline, "hang guard: the submission never arrived"
        waiter.join(HANG_GUARD_SECONDS)
        assert not waiter.is_alive(), f"hang guard: the wait did not hear the {outcome} job"
        view = waited[0]
        assert view.status is outcome
        stored = get(platform, "acme", view.inference_id)
        assert stored.status is outcome
        assert stored.stream_id == view.stream_id
        grown = {table: counts(engine)[table] - before[table] for table in before}
        assert grown["inference_requests"] == 1
        assert grown["generation_streams"] == 1
        if outcome is InferenceStatus.COMPLETED:
            assert view.output is not None
            assert view.output["dimension"] == 384
            assert [step.operation for step in view.steps] == [
                step.operation for step in stored.steps
            ]
            assert grown["inference_steps"] == len(view.steps) > 0
        else:
            assert view.error is not None


def test_a_wait_is_woken_by_the_completion_notice(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With the safety-net re-read pushed out of reach, only the worker's notice can end it.
    monkeypatch.setattr(inference_service, "_RECHECK_SECONDS", 3600.0)
    waited: list[InferenceView] = []
    for sentence, outcome in (
        ("wake me when done", InferenceStatus.COMPLETED),
        ("🙂", InferenceStatus.FAILED),  # a failure sends the same notice
    ):
        submitted = submit(platform, _embedding(sentence))
        waited.clear()
        waiter = threading.Thread(
            target=lambda i=submitted.inference_id: waited.append(
                inference_service.wait(platform, "acme", i, timeout_seconds=3600)
            )
        )
        waiter.start()
        assert drain(platform) == 1
        waiter.join(HANG_GUARD_SECONDS)
        assert not waiter.is_alive(), f"hang guard: the wait did not hear the {outcome} job"
        assert waited[0].status is outcome


@pytest.mark.parametrize(
    ("file", "said"),
    [
        (("x.json", b'{"dtype": "float32", "shape": [2, 2], "data": [[1, 2], [3]]}'), "ragged"),
        (("x.json", b'{"dtype": "float", "shape": [1], "data": [1]}'), "dtype 'float' is not"),
        (("x.npy", b"not an array"), "the bytes are not a .npy array"),
    ],
)
def test_a_malformed_tensor_file_is_refused_at_submission(
    platform: Platform, cli: Cli, tmp_path: Path, file: tuple[str, bytes], said: str
) -> None:
    path = tmp_path / file[0]
    path.write_bytes(file[1])
    refused = cli(
        "infer", "onnx_run", "--tenant", "acme", "--model", "ab" * 32, "--input", f"x={path}"
    )
    assert refused.exit_code == 2, refused.stderr
    assert "input 'x': " in refused.stderr
    assert said in refused.stderr
    assert drain(platform) == 0  # nothing was queued
