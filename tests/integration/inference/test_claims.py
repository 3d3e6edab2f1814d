"""Claims and leases: a worker killed mid-job leaves the job to another, which completes it
exactly once; a worker whose claim was taken over writes nothing; a job whose workers keep
dying fails ("interrupted N times")."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from hartonomous.config import Settings
from hartonomous.db import head_revision
from hartonomous.inference.jobs import claim_next, complete, worker_identity
from hartonomous.inference.registry import registered
from hartonomous.inference.tasks import (
    InferenceStatus,
    InferenceTask,
    InputAtom,
    OutputFile,
    StepRecord,
    TaskContext,
    TaskResult,
)
from hartonomous.inference.worker import InferenceWorker
from hartonomous.provenance import SegmentKind
from hartonomous.security.tenants import set_tenant_state
from hartonomous.services import Platform
from hartonomous.services.inference import Submission, drain, get, submit, worker_service

from .conftest import counts, stream_of

HANG_GUARD_SECONDS = 120

# A worker process whose `text_embedding` blocks after claiming: it says which job it holds
# in the marker file, then waits to be killed.
_BLOCKING_WORKER = textwrap.dedent(
    """
    import sys, threading
    from pathlib import Path
    from sqlalchemy import create_engine
    from hartonomous.config import Settings
    from hartonomous.inference.registry import registered
    from hartonomous.inference.tasks import InferenceTask
    from hartonomous.inference.worker import InferenceWorker

    url, marker = sys.argv[1], Path(sys.argv[2])

    def blocking(context):
        marker.write_text(str(context.request.inference_id))
        threading.Event().wait()

    settings = Settings(inference={"lease_seconds": 5})
    worker = InferenceWorker(url, create_engine(url), settings)
    with registered(InferenceTask.TEXT_EMBEDDING, blocking):
        worker.run_once()
    """
)


def _wait_for(condition: object, what: str) -> None:
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"hang guard: {what} did not happen")
        time.sleep(0.1)


def _submit_embedding(platform: Platform, sentence: str) -> Submission:
    return Submission(tenant_id="acme", task=InferenceTask.TEXT_EMBEDDING, input={"text": sentence})


def test_a_worker_killed_mid_job_leaves_it_to_another_that_completes_it_once(
    platform: Platform, engine: Engine, database_url: str, tmp_path: Path
) -> None:
    submitted = submit(platform, _submit_embedding(platform, "killed while embedding"))
    marker = tmp_path / "claimed"
    worker = subprocess.Popen(
        [sys.executable, "-c", _BLOCKING_WORKER, database_url, str(marker)],
        env={k: v for k, v in os.environ.items() if not k.startswith("HARTONOMOUS_")},
    )
    try:
        _wait_for(marker.exists, "the worker process claimed the job")
        assert marker.read_text() == str(submitted.inference_id)
        worker.send_signal(signal.SIGKILL)
        assert worker.wait(timeout=HANG_GUARD_SECONDS) == -signal.SIGKILL
    finally:
        if worker.poll() is None:
            worker.kill()
    held = get(platform, "acme", submitted.inference_id)
    assert held.status is InferenceStatus.IN_PROGRESS
    assert held.attempts == 1
    with engine.connect() as connection:
        killed_claim = connection.execute(
            text("SELECT claimed_by FROM inference_requests WHERE inference_id = :i"),
            {"i": submitted.inference_id},
        ).scalar_one()
    before = counts(engine)
    assert before["inference_steps"] == before["generation_streams"] == 0

    # Another worker takes it once the killed one's lease (5 s) has run out.
    _wait_for(lambda: drain(platform) == 1, "another worker claimed the expired job")
    view = get(platform, "acme", submitted.inference_id)
    assert view.status is InferenceStatus.COMPLETED, view.error
    assert view.attempts == 2
    assert [step.operation for step in view.steps] == ["embed"]
    after = counts(engine)
    assert after["generation_streams"] == 1
    assert after["inference_atoms"] == 1
    with engine.connect() as connection:
        claimer = connection.execute(
            text("SELECT claimed_by FROM inference_requests WHERE inference_id = :i"),
            {"i": submitted.inference_id},
        ).scalar_one()
    assert claimer != killed_claim
    assert drain(platform) == 0


def test_a_worker_that_lost_its_claim_writes_nothing(platform: Platform, engine: Engine) -> None:
    submitted = submit(platform, _submit_embedding(platform, "two workers, one answer"))
    first = claim_next(engine, platform.settings, worker_identity())
    assert first is not None
    # Its lease runs out (as a worker stalled past lease_seconds would) and another claims.
    with engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE inference_requests SET lease_expires_at = now() - interval '1 second' "
                "WHERE inference_id = :i"
            ),
            {"i": submitted.inference_id},
        )
    second = claim_next(engine, platform.settings, worker_identity())
    assert second is not None
    assert second.attempt == 2
    before = counts(engine)
    late = TaskResult(output={"from": "the first worker"}, usage_units=Decimal(1))
    assert not complete(engine, first, late, 1.0)
    assert counts(engine) == before
    assert complete(
        engine, second, TaskResult(output={"from": "second"}, usage_units=Decimal(2)), 2.0
    )
    view = get(platform, "acme", submitted.inference_id)
    assert view.output == {"from": "second"}
    assert view.usage_units == Decimal(2)
    assert not complete(engine, first, late, 1.0)  # still nothing, after completion too
    assert get(platform, "acme", submitted.inference_id).output == {"from": "second"}


def test_a_job_interrupted_max_attempts_times_fails(
    engine: Engine, data_dir: Path, platform: Platform
) -> None:
    settings = Settings(data_dir=data_dir, inference={"max_attempts": 2})
    limited = Platform(engine=engine, settings=settings, migrations_head=head_revision())
    submitted = submit(limited, _submit_embedding(limited, "keeps killing its workers"))
    for attempt in (1, 2):
        claim = claim_next(engine, settings, worker_identity())
        assert claim is not None
        assert claim.attempt == attempt
        with engine.begin() as connection:  # its worker dies: the lease runs out
            connection.execute(
                text(
                    "UPDATE inference_requests SET lease_expires_at = now() - interval '1 s' "
                    "WHERE inference_id = :i"
                ),
                {"i": submitted.inference_id},
            )
    assert claim_next(engine, settings, worker_identity()) is None
    view = get(limited, "acme", submitted.inference_id)
    assert view.status is InferenceStatus.FAILED
    assert view.error is not None
    assert view.error.startswith("interrupted 2 times")
    stream = stream_of(engine, view)
    assert [s.kind for s in stream.segments] == [SegmentKind.Input, SegmentKind.Control]


def test_a_task_longer_than_its_lease_keeps_its_claim(
    engine: Engine, data_dir: Path, database_url: str, platform: Platform
) -> None:
    settings = Settings(data_dir=data_dir, inference={"lease_seconds": 5})
    submitted = submit(platform, _submit_embedding(platform, "a slow one"))
    started, release = threading.Event(), threading.Event()

    def slow(context: TaskContext) -> TaskResult:
        started.set()
        release.wait(HANG_GUARD_SECONDS)
        return TaskResult(output={"slow": True}, usage_units=Decimal(1))

    def lease() -> datetime:
        with engine.connect() as connection:
            return connection.execute(
                text("SELECT lease_expires_at FROM inference_requests WHERE inference_id = :i"),
                {"i": submitted.inference_id},
            ).scalar_one()

    def database_now() -> datetime:
        with engine.connect() as connection:
            return connection.execute(text("SELECT clock_timestamp()")).scalar_one()

    worker = InferenceWorker(database_url, engine, settings)
    with registered(InferenceTask.TEXT_EMBEDDING, slow):
        running = threading.Thread(target=worker.run_once)
        running.start()
        try:
            assert started.wait(HANG_GUARD_SECONDS)
            first = lease()
            _wait_for(lambda: database_now() > first, "the first lease's end")
            # Renewed meanwhile: nobody else may claim the job.
            assert lease() > first
            assert claim_next(engine, settings, worker_identity()) is None
        finally:
            release.set()
            running.join(HANG_GUARD_SECONDS)
    view = get(platform, "acme", submitted.inference_id)
    assert view.status is InferenceStatus.COMPLETED
    assert view.attempts == 1
    assert view.output == {"slow": True}


def test_a_job_running_when_up_stops_is_released_to_another_worker_at_once(
    engine: Engine, database_url: str, platform: Platform
) -> None:
    submitted = submit(platform, _submit_embedding(platform, "running as up stops"))
    started, unblock = threading.Event(), threading.Event()

    def stuck(context: TaskContext) -> TaskResult:
        started.set()
        unblock.wait(HANG_GUARD_SECONDS)
        return TaskResult(output={"from": "the abandoned thread"}, usage_units=Decimal(1))

    # The worker as `up` runs it, stopped as `up` stops it (with a short wait).
    service = worker_service(database_url, engine, platform.settings)
    with registered(InferenceTask.TEXT_EMBEDDING, stuck):
        service.start()
        try:
            assert started.wait(HANG_GUARD_SECONDS)
            service.stop(timeout=0.2)
            assert service.running  # abandoned mid-task
            # Given back at once: pending, unclaimed, no lease, the attempt not counted.
            with engine.connect() as connection:
                row = connection.execute(
                    text(
                        "SELECT status, claimed_by, lease_expires_at, attempts "
                        "FROM inference_requests WHERE inference_id = :i"
                    ),
                    {"i": submitted.inference_id},
                ).one()
            assert tuple(row) == ("pending", None, None, 0)
        except BaseException:
            unblock.set()
            raise
    # Another worker (the real task now) takes it without waiting for any lease.
    assert drain(platform) == 1
    view = get(platform, "acme", submitted.inference_id)
    assert view.status is InferenceStatus.COMPLETED
    assert view.attempts == 1
    # The abandoned thread finishes later and writes nothing over it.
    unblock.set()
    _wait_for(lambda: not service.running, "the abandoned worker's end")
    after = get(platform, "acme", submitted.inference_id)
    assert after.output == view.output
    assert after.output is not None
    assert "vector" in after.output


def test_a_completion_stores_exactly_what_the_task_returned(
    platform: Platform, engine: Engine
) -> None:
    """The completion writes steps, atoms and stream as one batch of rows: every field comes
    back as the task gave it (floats to the bit, bytes, NULLs, nested and non-ASCII JSON)."""
    submitted = submit(platform, _submit_embedding(platform, "stored as given"))
    claim = claim_next(engine, platform.settings, worker_identity())
    assert claim is not None
    (stored_text,) = [bytes(a) for a in _input_atom_ids(engine, submitted.inference_id)]
    model = bytes(range(32))
    steps = [
        StepRecord(
            "first",
            0.1 + 0.2,
            model_atom_id=model,
            query_text="naïve 🙂 \\x00",
            rows_examined=2**40,
            rows_returned=0,
            cache_used=True,
            detail={"nested": {"list": [1, 2.5, None, "ü"]}, "flag": False},
        ),
        StepRecord("second", 1e-300, index_used="hnsw"),
    ]
    files = [
        OutputFile("fresh", b"\x00\xffnew bytes " + os.urandom(8), "application/octet-stream"),
        # Bytes already stored (the request's text): the output holds the same atom.
        OutputFile("again", b"stored as given", "text/plain; charset=utf-8"),
    ]
    result = TaskResult(
        output={"answer": "ö"},
        usage_units=Decimal("0.0000015"),
        confidence=0.25,
        embedding=[0.5, -1.0],
        input_atoms=[InputAtom("text", stored_text), InputAtom("other", stored_text)],
        output_files=files,
        steps=steps,
    )
    assert complete(engine, claim, result, 12.5)

    view = get(platform, "acme", submitted.inference_id)
    assert view.status is InferenceStatus.COMPLETED
    assert view.usage_units == Decimal("0.000002")  # NUMERIC(18,6), half-even
    assert [(s.step_number, s.operation, s.duration_ms, s.index_used) for s in view.steps] == [
        (1, "first", 0.1 + 0.2, None),
        (2, "second", 1e-300, "hnsw"),
    ]
    first = view.steps[0]
    assert (first.rows_examined, first.rows_returned, first.cache_used) == (2**40, 0, True)
    assert first.detail == {"nested": {"list": [1, 2.5, None, "ü"]}, "flag": False}
    assert (view.steps[1].rows_examined, view.steps[1].cache_used) == (None, False)
    with engine.connect() as connection:
        step_facts = connection.execute(
            text(
                "SELECT model_atom_id, query_text FROM inference_steps "
                "WHERE inference_id = :i ORDER BY step_number"
            ),
            {"i": submitted.inference_id},
        ).all()
        atom_rows = connection.execute(
            text(
                "SELECT a.role, a.ordinal, a.atom_id, a.name, h.source_uri "
                "FROM inference_atoms a LEFT JOIN holdings h USING (holding_id) "
                "WHERE a.inference_id = :i ORDER BY a.role, a.ordinal"
            ),
            {"i": submitted.inference_id},
        ).all()
    assert [(bytes(m) if m else None, q) for m, q in step_facts] == [
        (model, "naïve 🙂 \\x00"),
        (None, None),
    ]
    prefix = f"inference:{submitted.inference_id}"
    assert [(r.role, r.ordinal, bytes(r.atom_id), r.name, r.source_uri) for r in atom_rows] == [
        ("input", 0, stored_text, "text", f"{prefix}/input/text"),
        ("input", 1, stored_text, "other", f"{prefix}/input/text"),
        ("output", 0, hashlib.sha256(files[0].data).digest(), "fresh", f"{prefix}/output/fresh"),
        ("output", 1, stored_text, "again", f"{prefix}/output/again"),
    ]
    assert view.output == {
        "answer": "ö",
        "output_atoms": {
            "fresh": hashlib.sha256(files[0].data).hexdigest(),
            "again": stored_text.hex(),
        },
    }
    stream = stream_of(engine, view)
    assert [s.kind for s in stream.segments] == [
        SegmentKind.Input,
        SegmentKind.Control,
        SegmentKind.Embedding,
        SegmentKind.Telemetry,
        SegmentKind.Output,
    ]
    telemetry = json.loads(stream.segments[3].payload)
    assert telemetry["duration_ms"] == 12.5
    assert telemetry["steps"] == [
        {"operation": "first", "duration_ms": 0.1 + 0.2},
        {"operation": "second", "duration_ms": 1e-300},
    ]
    assert json.loads(stream.segments[4].payload) == view.output
    assert drain(platform) == 0


def _input_atom_ids(engine: Engine, inference_id: object) -> list[bytes]:
    """The atoms the submission stored for the request (its held inputs)."""
    with engine.connect() as connection:
        return list(
            connection.execute(
                text("SELECT atom_id FROM holdings WHERE source_uri LIKE :p"),
                {"p": f"inference:{inference_id}/input/%"},
            ).scalars()
        )


def test_a_job_whose_tenant_is_disabled_while_it_completes_stores_nothing(
    platform: Platform, engine: Engine, database_url: str
) -> None:
    """The disable commits while the job's outcome is being written: the completion waits
    for it (the tenant's state lock) and then sees it, so no output is held by the disabled
    tenant; the job fails naming the disable, and the worker goes on."""
    submitted = submit(platform, _submit_embedding(platform, "finished too late"))
    holdings_before = _holdings(engine)

    def with_output(context: TaskContext) -> TaskResult:
        made = OutputFile("out", b"made after the disable " + os.urandom(8), "text/plain")
        return TaskResult(output={"x": 1}, usage_units=Decimal(1), output_files=[made])

    worker = InferenceWorker(database_url, engine, platform.settings)
    with engine.connect() as disabling, registered(InferenceTask.TEXT_EMBEDDING, with_output):
        transaction = disabling.begin()
        set_tenant_state(disabling, "acme", "disabled")  # not committed: the job runs
        running = threading.Thread(target=worker.run_once)
        running.start()
        waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        _wait_for(lambda: _scalar(engine, waiting) == 1, "the completion to wait for the disable")
        transaction.commit()
        running.join(HANG_GUARD_SECONDS)
    assert not running.is_alive()
    with engine.connect() as connection:
        status, error = connection.execute(
            text("SELECT status, error FROM inference_requests WHERE inference_id = :i"),
            {"i": submitted.inference_id},
        ).one()
    assert status == "failed"
    assert error == "tenant 'acme' is disabled"
    assert _holdings(engine) == holdings_before


def _scalar(engine: Engine, sql: str) -> object:
    with engine.connect() as connection:
        return connection.execute(text(sql)).scalar_one()


def _holdings(engine: Engine) -> int:
    return int(str(_scalar(engine, "SELECT count(*) FROM holdings")))
