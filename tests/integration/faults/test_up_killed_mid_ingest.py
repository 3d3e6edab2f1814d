"""Fault: `up` SIGKILLed while it ingests an upload. The next `up` marks the job `interrupted`;
the file it finished is kept (and billed once), the others left nothing behind: no holding,
no atom, no spooled upload. (tests/integration/test_ingest_interrupted.py: the same through
`ingest`.) The kill is placed without timing: the second file's first chunk is held by an
uncommitted row of the test, so `up` waits on that lock after committing the first file."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
from sqlalchemy import Engine, select
from tests.conftest import Cli
from tests.integration.data_plane.data_plane_support import random_bytes
from tests.integration.faults.fault_support import (
    bearer,
    drained,
    exactly_once_counts,
    running_up,
    scalar,
    upload,
    wait_until,
)
from tests.integration.test_ingest_interrupted import (
    FIRST_FILE_ONLY,
    block_on_first_chunk,
    wait_for_first_file_then_lock,
)

from hartonomous.atoms.chunking import chunk_bytes
from hartonomous.db.tables import holdings, ingestion_job_atoms, ingestion_job_plans
from hartonomous.ingest.pipeline import BATCH_BYTES

# Larger than half a batch: every file is a transaction of its own.
_FILE_SIZE = BATCH_BYTES // 2 + 1
_APPLICATION = "up-to-kill"


def test_up_killed_mid_ingest_leaves_the_job_interrupted_and_nothing_partial(
    engine: Engine, cli: Cli, data_dir: Path
) -> None:
    headers = bearer(engine, "acme")
    contents = {f"f{i}.bin": random_bytes(_FILE_SIZE, seed=300 + i) for i in range(1, 5)}
    up = running_up({**cli.env, "PGAPPNAME": _APPLICATION}, data_dir)
    try:
        with engine.connect() as blocker:
            block_on_first_chunk(blocker, contents["f2.bin"])
            accepted = upload(up.url, headers, contents)
            assert accepted.status_code == 202, accepted.text
            job_id = accepted.json()["job_id"]
            wait_for_first_file_then_lock(engine)
            up.process.send_signal(signal.SIGKILL)
            up.process.wait()
            blocker.rollback()
    finally:
        up.stop()
    # PostgreSQL ends the killed process's sessions (and the job's lease) once it notices.
    wait_until(
        lambda: (
            scalar(
                engine,
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name",
                name=_APPLICATION,
            )
            == 0
        ),
        "the killed up's sessions to end",
    )
    assert scalar(engine, "SELECT status FROM ingestion_jobs") == "running"  # as it died

    again = running_up(cli.env, data_dir)
    try:
        answer = httpx.get(f"{again.url}/v1/jobs/{job_id}", headers=headers, timeout=60)
        assert answer.status_code == 200, answer.text
        job = answer.json()
        assert job["status"] == "interrupted", job
        wait_until(lambda: drained(engine), "the finished file billed", again.stderr_tail)
    finally:
        assert again.stop() == 0

    with engine.connect() as connection:
        files = connection.execute(
            select(ingestion_job_atoms.c.path, ingestion_job_atoms.c.status).order_by(
                ingestion_job_atoms.c.ordinal
            )
        ).all()
        held = connection.execute(select(holdings.c.source_uri)).scalars().all()
        plans = connection.execute(select(ingestion_job_plans)).all()
    assert [(Path(path).name, status) for path, status in files] == FIRST_FILE_ONLY
    assert [Path(uri).name for uri in held] == ["f1.bin"]
    assert plans == []
    # No atom of an unfinished file: f2's first chunk (the blocked row, rolled back) included.
    for name in ("f2.bin", "f3.bin", "f4.bin"):
        first = next(iter(chunk_bytes(contents[name]))).digest
        assert scalar(engine, "SELECT count(*) FROM atoms WHERE atom_id = :id", id=first) == 0
    # The spooled upload of the killed process was removed when the API started again.
    assert not any((data_dir / "uploads").iterdir())
    # The finished file is billed and projected once.
    assert exactly_once_counts(engine) == dict.fromkeys(exactly_once_counts(engine), 1)
