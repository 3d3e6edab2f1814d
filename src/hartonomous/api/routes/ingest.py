"""`/v1/ingest`, `/v1/jobs`: upload files to ingest, follow the job (docs/api.md, "Ingestion")."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Literal

import anyio
from fastapi import Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel

from hartonomous.api.auth import Caller, platform_of, requires, still_authenticated
from hartonomous.api.routing import api_router
from hartonomous.api.shutdown import ShuttingDownError, shutdown_notice
from hartonomous.api.uploads import FILES_FIELD, multipart_body, receive_files
from hartonomous.errors import ForbiddenError, NotAuthenticatedError
from hartonomous.ingest.pipeline import MAX_LABEL_CHARACTERS, IngestRequest
from hartonomous.ingest.uploads import UploadSpool
from hartonomous.security.roles import Role
from hartonomous.services.ingestion import JobView, job_status, start_upload_ingestion

router = api_router(prefix="/v1", tags=["ingestion"])

_user = requires(Role.USER)
_POLL_SECONDS = 0.25  # how often the event stream reads the job's rows

_MULTIPART_BODY = multipart_body(
    {FILES_FIELD: {"type": "array", "items": {"type": "string", "format": "binary"}}},
    [FILES_FIELD],
)


class IngestAccepted(BaseModel):
    """The job an upload started; follow it at ``status_url`` (also the Location header)."""

    job_id: uuid.UUID
    status_url: str
    files: int


class JobFileModel(BaseModel):
    ordinal: int
    path: str
    status: Literal["ingested", "unchanged", "failed", "not_done"]
    atom_id: str | None
    error: str | None
    new_bytes: int
    reused_bytes: int


class JobProgress(BaseModel):
    files_total: int
    files_done: int
    files_failed: int


class JobModel(BaseModel):
    job_id: uuid.UUID
    status: Literal["running", "completed", "completed_with_errors", "failed", "interrupted"]
    principal_id: str | None
    created_at: datetime
    finished_at: datetime | None
    progress: JobProgress
    new_bytes: int
    reused_bytes: int
    files: list[JobFileModel]


def _progress(view: JobView) -> JobProgress:
    return JobProgress(
        files_total=view.files_total, files_done=view.files_done, files_failed=view.files_failed
    )


def _job_model(view: JobView) -> JobModel:
    return JobModel(
        job_id=uuid.UUID(view.job_id),
        status=view.status,
        principal_id=view.principal_id,
        created_at=view.created_at,
        finished_at=view.finished_at,
        progress=_progress(view),
        new_bytes=view.new_bytes,
        reused_bytes=view.reused_bytes,
        files=[JobFileModel.model_validate(file, from_attributes=True) for file in view.files],
    )


@router.post(
    "/ingest",
    status_code=202,
    response_model=IngestAccepted,
    openapi_extra=_MULTIPART_BODY,
    summary="Upload files to ingest as one job",
)
async def ingest(
    request: Request,
    response: Response,
    *,
    visibility: Literal["private", "public"] = "private",
    dedup_policy: str = Query(
        "default", pattern=r"^[\w.:-]{1,128}$", description="A deduplication policy's name"
    ),
    label: str | None = Query(
        None,
        min_length=1,
        max_length=MAX_LABEL_CHARACTERS,
        pattern=r"^[^\x00-\x1f\x7f]*\S[^\x00-\x1f\x7f]*$",
        description="Label stored on each new holding (classification votes with it)",
    ),
    caller: Caller = Depends(_user),  # noqa: B008
) -> IngestAccepted:
    """Spool the multipart body's files (parts named `files`) to disk, then ingest them in the
    background; 202 with the job. Over `[server] max_upload_bytes` → 413, a bad file name →
    400, and nothing is ingested. `visibility=public` (the public corpus) needs `admin`."""
    if visibility == "public" and not caller.role.includes(Role.ADMIN):
        raise ForbiddenError("ingesting into the public corpus needs the 'admin' role")
    platform = platform_of(request)
    spool = await run_in_threadpool(UploadSpool, platform.settings.data_dir)
    try:
        await receive_files(request, spool, platform.settings.server.max_upload_bytes)
        job_id = await run_in_threadpool(
            start_upload_ingestion,
            platform,
            IngestRequest(
                tenant_id=caller.tenant_id,
                principal_id=caller.principal_id,
                visibility=visibility,
                source_type="upload",
                dedup_policy=dedup_policy,
                label=label,
            ),
            spool,
        )
    except BaseException:
        spool.remove()
        raise
    location = f"/v1/jobs/{job_id}"
    response.headers["Location"] = location
    return IngestAccepted(job_id=job_id, status_url=location, files=len(spool.files))


def _visible_job(request: Request, job_id: uuid.UUID, caller: Caller = Depends(_user)) -> JobView:  # noqa: B008
    return job_status(platform_of(request), caller.tenant_id, job_id)


@router.get("/jobs/{job_id}", response_model=JobModel, summary="An ingestion job's status")
def get_job(
    view: JobView = Depends(_visible_job),  # noqa: B008
    caller: Caller = Depends(_user),  # noqa: B008
) -> JobModel:
    """Status, progress and per-file outcomes; another tenant's job is 404."""
    return _job_model(view)


@router.get(
    "/jobs/{job_id}/events",
    response_class=EventSourceResponse,
    summary="Server-sent events of an ingestion job's progress",
)
async def job_events(
    request: Request,
    job_id: uuid.UUID,
    view: JobView = Depends(_visible_job),  # noqa: B008
    caller: Caller = Depends(_user),  # noqa: B008
) -> AsyncIterator[ServerSentEvent]:
    """`file` (one per file outcome, `data` a job file), `progress` (when files are done,
    `data` the progress) and, last, `done` (`data` the whole job); the stream then ends. It
    ends early, without `done`, when the server shuts down, and with a last `closed` event
    (`data` the `code` and `detail` of the 401 the key would now get) when the caller's key
    stops authenticating: revoked, or its principal or tenant disabled (docs/security.md)."""
    seen: set[int] = set()
    reported = -1
    while True:
        for file in view.files:
            if file.ordinal not in seen:
                seen.add(file.ordinal)
                model = JobFileModel.model_validate(file, from_attributes=True)
                yield ServerSentEvent(event="file", data=model, id=str(file.ordinal))
        if view.files_done != reported:
            reported = view.files_done
            yield ServerSentEvent(event="progress", data=_progress(view))
        if view.terminal:
            yield ServerSentEvent(event="done", data=_job_model(view))
            return
        try:
            await shutdown_notice(request).first(anyio.sleep(_POLL_SECONDS))
        except ShuttingDownError:
            return  # the server is stopping: end the stream now, not at its timeout
        try:
            view = await run_in_threadpool(_next_view, request, caller, job_id, len(seen))
        except NotAuthenticatedError as exc:
            yield ServerSentEvent(event="closed", data=StreamClosed(code=exc.code, detail=str(exc)))
            return


class StreamClosed(BaseModel):
    """Why an event stream ended before `done`: the problem code and detail of the 401 the
    caller's key now gets (``principal-disabled``, ``tenant-disabled``, ``not-authenticated``)."""

    code: str
    detail: str


def _next_view(request: Request, caller: Caller, job_id: uuid.UUID, known: int) -> JobView:
    # The caller is checked on each read, as a new request would be (within
    # `[security] api_key_cache_seconds` of a change made by another process).
    still_authenticated(request)
    # Counts first: the file rows are read again only when there are new ones to send.
    platform = platform_of(request)
    view = job_status(platform, caller.tenant_id, job_id, with_files=False)
    if view.files_done == known and not view.terminal:
        return view
    return job_status(platform, caller.tenant_id, job_id)
