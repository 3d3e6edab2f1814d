"""One ingestion job of the tenant acted for: status, progress and each file's outcome.
Another tenant's job is a 404 page (``services.ingestion.job_status`` reads the tenant's only)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from hartonomous.services.ingestion import JobNotFoundError, job_status
from hartonomous.ui.access import ANYONE, Viewer, platform_of
from hartonomous.ui.rendering import render

router = APIRouter(prefix="/jobs")


@router.get("/{job_id}")
async def job(request: Request, job_id: str, seen: Viewer = ANYONE) -> Response:
    try:
        parsed = uuid.UUID(job_id)
    except ValueError:
        raise JobNotFoundError(f"job {job_id[:64]!r} not found: not a job id") from None
    view = await run_in_threadpool(job_status, platform_of(request), seen.tenant_id, parsed)
    return render(request, "job.html", {"job": view})
