"""An ingestion job's life: planned, running under its process's lease, then terminal.

A job is `running` while the process that runs it holds a session advisory lock on the job
(its lease, on a connection of its own, in autocommit so no transaction stays open). When that
process dies, PostgreSQL ends its session and the lease with it. The next command that opens
the database for ingestion (`up`, `ingest`) calls `interrupt_abandoned_jobs`: every `running`
job whose lease it can take is marked `interrupted`; the files it finished stay as they are,
each planned file it never reported gets a `not_done` row. The plan (`ingestion_job_plans`) is
written before the first file and deleted when the job ends.

Terminal states: `completed`, `completed_with_errors`, `failed` (every file failed) and
`interrupted`. See docs/ingest.md.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

from sqlalchemy import Connection, Engine, func, insert, select, text, update

from hartonomous.db.array_param import BinaryArray
from hartonomous.db.tables import ingestion_job_plans, ingestion_jobs
from hartonomous.security.tenants import require_active_party

JobStatus = Literal["running", "completed", "completed_with_errors", "failed", "interrupted"]
NOT_DONE_REASON = "not done: the job was interrupted before this file"

# (class, object) keys of the lease: a constant class for ingestion jobs, the job's hash.
_LEASE_CLASS = 0x496E6A62


@contextmanager
def job_lease(
    engine: Engine, tenant_id: str, principal_id: str | None, planned: Sequence[str]
) -> Iterator[uuid.UUID]:
    """Create a `running` job planning `planned` paths and hold its lease for the block.

    Raises ``UnknownTenantError`` or ``TenantDisabledError`` (hartonomous.security.tenants),
    ``PrincipalDisabledError`` (hartonomous.security.principals).
    The lease is taken before the job row exists, so no other process can ever see this job
    `running` without a live owner.
    """
    job_id = uuid.uuid4()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as lease:
        lease.execute(
            text("SELECT pg_advisory_lock(:cls, hashtext(:job))"),
            {"cls": _LEASE_CLASS, "job": str(job_id)},
        )
        try:
            _create(engine, job_id, tenant_id, principal_id, planned)
            yield job_id
        finally:
            lease.execute(
                text("SELECT pg_advisory_unlock(:cls, hashtext(:job))"),
                {"cls": _LEASE_CLASS, "job": str(job_id)},
            )


def _create(
    engine: Engine,
    job_id: uuid.UUID,
    tenant_id: str,
    principal_id: str | None,
    planned: Sequence[str],
) -> None:
    with engine.begin() as connection:
        require_active_party(connection, tenant_id, principal_id)
        connection.execute(
            insert(ingestion_jobs).values(
                tenant_id=tenant_id, job_id=job_id, principal_id=principal_id
            )
        )
        if planned:
            # One statement whatever the number of files (the paths travel as one array), not
            # one per file: a job of small files plans thousands of them.
            connection.execute(
                _PLAN,
                {"tenant_id": tenant_id, "job_id": job_id, "paths": BinaryArray(planned)},
            )


_PLAN = text(
    "INSERT INTO ingestion_job_plans (tenant_id, job_id, ordinal, path) "
    "SELECT :tenant_id, :job_id, CAST(p.ordinality AS int) - 1, p.path "
    "FROM unnest(CAST(:paths AS text[])) WITH ORDINALITY AS p(path, ordinality)"
)


def finish_job(connection: Connection, tenant_id: str, job_id: uuid.UUID) -> JobStatus:
    """Make the job terminal from its file rows: `failed` when every file failed."""
    return _conclude(connection, tenant_id, job_id, interrupted=False)


def interrupt_job(
    connection: Connection, tenant_id: str, job_id: uuid.UUID, reason: str = NOT_DONE_REASON
) -> None:
    """Mark the job `interrupted`; its unreported planned files become `not_done` rows whose
    error is ``<path>: <reason>``."""
    connection.execute(
        text(
            "INSERT INTO ingestion_job_atoms (tenant_id, job_id, ordinal, path, status, error) "
            "SELECT p.tenant_id, p.job_id, p.ordinal, p.path, 'not_done', "
            "       p.path || ': ' || :reason "
            "FROM ingestion_job_plans p WHERE p.tenant_id = :tenant AND p.job_id = :job "
            "ON CONFLICT DO NOTHING"
        ),
        {"tenant": tenant_id, "job": job_id, "reason": reason},
    )
    _conclude(connection, tenant_id, job_id, interrupted=True)


def _conclude(
    connection: Connection, tenant_id: str, job_id: uuid.UUID, *, interrupted: bool
) -> JobStatus:
    totals = connection.execute(
        text(
            "SELECT count(*) AS files, count(*) FILTER (WHERE status = 'failed') AS failed, "
            "coalesce(sum(new_bytes), 0) AS new_bytes, "
            "coalesce(sum(reused_bytes), 0) AS reused_bytes "
            "FROM ingestion_job_atoms WHERE tenant_id = :tenant AND job_id = :job"
        ),
        {"tenant": tenant_id, "job": job_id},
    ).one()
    status: JobStatus
    if interrupted:
        status = "interrupted"
    elif totals.failed == 0:
        status = "completed"
    elif totals.failed < totals.files:
        status = "completed_with_errors"
    else:
        status = "failed"
    connection.execute(
        update(ingestion_jobs)
        .where(ingestion_jobs.c.tenant_id == tenant_id, ingestion_jobs.c.job_id == job_id)
        .values(
            status=status,
            file_count=totals.files,
            failed_count=totals.failed,
            new_bytes=totals.new_bytes,
            reused_bytes=totals.reused_bytes,
            finished_at=func.now(),
        )
    )
    connection.execute(
        ingestion_job_plans.delete().where(
            ingestion_job_plans.c.tenant_id == tenant_id, ingestion_job_plans.c.job_id == job_id
        )
    )
    return status


def interrupt_abandoned_jobs(engine: Engine) -> list[uuid.UUID]:
    """Mark `interrupted` every `running` job whose process is gone; their ids.

    A job whose owner still runs (in this process or another) keeps its lease and is left alone.
    """
    with engine.connect() as connection:
        running = connection.execute(
            select(ingestion_jobs.c.tenant_id, ingestion_jobs.c.job_id).where(
                ingestion_jobs.c.status == "running"
            )
        ).all()
    interrupted: list[uuid.UUID] = []
    for tenant_id, job_id in running:
        with engine.begin() as connection:
            free = connection.execute(
                text("SELECT pg_try_advisory_xact_lock(:cls, hashtext(:job))"),
                {"cls": _LEASE_CLASS, "job": str(job_id)},
            ).scalar_one()
            still_running = connection.execute(
                select(ingestion_jobs.c.status).where(
                    ingestion_jobs.c.tenant_id == tenant_id, ingestion_jobs.c.job_id == job_id
                )
            ).scalar_one()
            if free and still_running == "running":
                interrupt_job(connection, tenant_id, job_id)
                interrupted.append(job_id)
    return interrupted
