"""Ingestion use cases: ingest paths now, start a job over uploaded files, read a job's status.

The work itself is ``ingest.pipeline.ingest_paths`` (one job, per-file outcomes, docs/ingest.md);
these functions add what an entry point needs around it: abandoned jobs interrupted first, an
upload ingested in the background with its spool removed whatever the outcome, and the job's
status, per-file outcomes and progress read back for its tenant only.
"""

from __future__ import annotations

import contextvars
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import Row, func, select, tuple_

from hartonomous.db.tables import ingestion_job_atoms, ingestion_job_plans, ingestion_jobs
from hartonomous.errors import NotFoundError
from hartonomous.ingest.jobs import JobStatus, interrupt_abandoned_jobs
from hartonomous.ingest.pipeline import FileOutcome, IngestRequest, JobOutcome, ingest_paths
from hartonomous.ingest.uploads import UploadSpool
from hartonomous.security.principals import PrincipalDisabledError
from hartonomous.security.tenants import TenantDisabledError
from hartonomous.services.pagination import Page, cursor_codec, page_of_rows, time_and_id
from hartonomous.services.platform import Platform

__all__ = [
    "JobFile",
    "JobNotFoundError",
    "JobSummary",
    "JobView",
    "job_history",
    "job_status",
    "run_ingestion",
    "running_jobs",
    "start_upload_ingestion",
]

log = structlog.get_logger(__name__)

TERMINAL = frozenset({"completed", "completed_with_errors", "failed", "interrupted"})


class JobNotFoundError(NotFoundError, LookupError):
    """No such ingestion job for this tenant."""


def run_ingestion(
    platform: Platform,
    request: IngestRequest,
    paths: Sequence[Path],
    *,
    on_start: Callable[[int], None] | None = None,
    on_file: Callable[[FileOutcome], None] | None = None,
) -> JobOutcome:
    """Ingest ``paths`` (files and folders) as one job and wait for its outcome.

    Jobs whose process died are marked `interrupted` first (ingest/jobs.py). Raises what
    ``ingest_paths`` raises before anything is written (unknown or disabled tenant, invalid
    principal).
    """
    interrupt_abandoned_jobs(platform.maintenance_engine)
    return ingest_paths(platform.engine, request, paths, on_file, on_start=on_start)


def start_upload_ingestion(
    platform: Platform, request: IngestRequest, spool: UploadSpool
) -> uuid.UUID:
    """Start ingesting the spooled files in a background thread; the job's id once it exists.

    The job row is committed before this returns, so its status can be read at once. Each
    file is recorded under the name its sender gave (``request.source_names`` is filled here).
    The spool is removed when the job ends, whatever its outcome, or here when the job could
    not start (the error, such as a disabled tenant, is raised).
    """
    names = {path: name for name, path in spool.files}
    request = replace(request, source_names=names)
    started = threading.Event()
    job: list[uuid.UUID] = []
    failure: list[BaseException] = []

    def on_job(job_id: uuid.UUID) -> None:
        job.append(job_id)
        started.set()

    reported: list[FileOutcome] = []

    def on_file(outcome: FileOutcome) -> None:
        # Every file reported: the spool goes before the job turns terminal, so no reader of
        # a finished job ever finds its upload still on disk.
        reported.append(outcome)
        if len(reported) == len(spool.files):
            spool.remove()

    def work() -> None:
        try:
            paths = [path for _, path in spool.files]
            ingest_paths(platform.engine, request, paths, on_file, on_job=on_job)
        except (TenantDisabledError, PrincipalDisabledError) as exc:
            failure.append(exc)  # before the job starts: raised to the caller; after: logged
        except BaseException as exc:
            failure.append(exc)
            if job:
                log.error("upload ingestion failed", job_id=str(job[0]), exc_info=exc)
        finally:
            spool.remove()
            started.set()

    # The thread runs in a copy of the caller's context: what a request bound there (its
    # tenant, for row-level security) holds for the job's transactions too.
    context = contextvars.copy_context()
    threading.Thread(target=context.run, args=(work,), name="upload-ingestion", daemon=True).start()
    started.wait()
    if not job:
        raise failure[0]
    return job[0]


@dataclass(frozen=True)
class JobFile:
    """One file's outcome in a job (`not_done`: the job was interrupted before it)."""

    ordinal: int
    path: str
    status: str  # ingested | unchanged | failed | not_done
    atom_id: str | None
    error: str | None
    new_bytes: int
    reused_bytes: int


@dataclass(frozen=True)
class JobView:
    """A job's state: ``files_total`` planned, ``files_done`` reported so far."""

    job_id: str
    status: JobStatus
    principal_id: str | None
    created_at: datetime
    finished_at: datetime | None
    files_total: int
    files_done: int
    files_failed: int
    new_bytes: int
    reused_bytes: int
    files: list[JobFile]

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


def job_status(
    platform: Platform, tenant_id: str, job_id: uuid.UUID, *, with_files: bool = True
) -> JobView:
    """The job's status, progress and (with ``with_files``) per-file outcomes by ordinal.

    Raises ``JobNotFoundError`` when the tenant has no such job (another tenant's included).
    """
    scope = (ingestion_job_atoms.c.tenant_id == tenant_id, ingestion_job_atoms.c.job_id == job_id)
    with platform.engine.connect() as connection:
        job = connection.execute(
            select(ingestion_jobs).where(
                ingestion_jobs.c.tenant_id == tenant_id, ingestion_jobs.c.job_id == job_id
            )
        ).first()
        if job is None:
            raise JobNotFoundError(f"job {job_id} not found for tenant {tenant_id!r}")
        done = connection.execute(
            select(
                func.count(),
                func.count().filter(ingestion_job_atoms.c.status == "failed"),
                func.coalesce(func.sum(ingestion_job_atoms.c.new_bytes), 0),
                func.coalesce(func.sum(ingestion_job_atoms.c.reused_bytes), 0),
            ).where(*scope)
        ).one()
        # The plan lives while the job runs; a terminal job's file rows are its whole plan.
        planned = connection.execute(
            select(func.count()).where(
                ingestion_job_plans.c.tenant_id == tenant_id,
                ingestion_job_plans.c.job_id == job_id,
            )
        ).scalar_one()
        rows = (
            connection.execute(
                select(ingestion_job_atoms).where(*scope).order_by(ingestion_job_atoms.c.ordinal)
            ).all()
            if with_files
            else []
        )
    return JobView(
        job_id=str(job.job_id),
        status=job.status,
        principal_id=job.principal_id,
        created_at=job.created_at,
        finished_at=job.finished_at,
        files_total=max(planned, done[0]),
        files_done=done[0],
        files_failed=done[1],
        new_bytes=int(done[2]),
        reused_bytes=int(done[3]),
        files=[
            JobFile(
                ordinal=row.ordinal,
                path=row.path,
                status=row.status,
                atom_id=bytes(row.atom_id).hex() if row.atom_id is not None else None,
                error=row.error,
                new_bytes=row.new_bytes,
                reused_bytes=row.reused_bytes,
            )
            for row in rows
        ],
    )


def running_jobs(platform: Platform, tenant_id: str, *, limit: int = 20) -> list[JobView]:
    """The tenant's running jobs, newest first, at most ``limit``, with their progress (no
    per-file rows): what the admin UI's dashboard shows (docs/admin-ui.md)."""
    with platform.engine.connect() as connection:
        ids = (
            connection.execute(
                select(ingestion_jobs.c.job_id)
                .where(
                    ingestion_jobs.c.tenant_id == tenant_id, ingestion_jobs.c.status == "running"
                )
                .order_by(ingestion_jobs.c.created_at.desc())
                .limit(limit)
            )
            .scalars()
            .all()
        )
    views = []
    for job_id in ids:
        try:
            views.append(job_status(platform, tenant_id, job_id, with_files=False))
        except JobNotFoundError:  # finished and pruned between the two reads
            continue
    return views


_HISTORY = "ingestion-jobs"


@dataclass(frozen=True)
class JobSummary:
    """One job of a tenant's history, from its row: ``file_count``, ``failed_count`` and the
    byte counts are written when the job ends (0 while it runs)."""

    job_id: str
    status: JobStatus
    principal_id: str | None
    created_at: datetime
    finished_at: datetime | None
    file_count: int
    failed_count: int
    new_bytes: int
    reused_bytes: int


def job_history(
    platform: Platform, tenant_id: str, limit: int, cursor: str | None = None
) -> Page[JobSummary]:
    """The tenant's ingestion jobs, newest first, up to ``limit`` after ``cursor`` (None: from
    the newest), and the next page's cursor (docs/admin-ui.md, "Ingestion").

    Raises ``InvalidCursorError`` for a cursor not issued to this tenant for this listing.
    """
    codec = cursor_codec(platform.engine)
    query = select(ingestion_jobs).where(ingestion_jobs.c.tenant_id == tenant_id)
    if cursor is not None:
        created_at, job_id = time_and_id(
            codec.decode(_HISTORY, tenant_id, cursor, filters={}), "job history"
        )
        query = query.where(
            tuple_(ingestion_jobs.c.created_at, ingestion_jobs.c.job_id) < (created_at, job_id)
        )
    query = query.order_by(ingestion_jobs.c.created_at.desc(), ingestion_jobs.c.job_id.desc())
    with platform.engine.connect() as connection:
        rows = connection.execute(query.limit(limit + 1)).all()
    return page_of_rows(
        rows,
        limit,
        _summary,
        lambda last: codec.encode(
            _HISTORY, tenant_id, [last.created_at.isoformat(), str(last.job_id)], filters={}
        ),
    )


def _summary(row: Row[Any]) -> JobSummary:
    return JobSummary(
        job_id=str(row.job_id),
        status=row.status,
        principal_id=row.principal_id,
        created_at=row.created_at,
        finished_at=row.finished_at,
        file_count=row.file_count,
        failed_count=row.failed_count,
        new_bytes=row.new_bytes,
        reused_bytes=row.reused_bytes,
    )
