"""One ingestion job of the tenant acted for: status, progress and each file's outcome, as a
page and as JSON for the ingestion page's script (`GET /ui/jobs/{id}/progress`). Another
tenant's job is a 404 (``services.ingestion.job_status`` reads the tenant's only)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from hartonomous.services.ingestion import JobNotFoundError, JobView, job_status
from hartonomous.ui.access import ANYONE, Viewer, platform_of
from hartonomous.ui.rendering import render

router = APIRouter(prefix="/jobs")


async def _view(request: Request, seen: Viewer, job_id: str) -> JobView:
    try:
        parsed = uuid.UUID(job_id)
    except ValueError:
        raise JobNotFoundError(f"job {job_id[:64]!r} not found: not a job id") from None
    return await run_in_threadpool(job_status, platform_of(request), seen.tenant_id, parsed)


@router.get("/{job_id}")
async def job(request: Request, job_id: str, seen: Viewer = ANYONE) -> Response:
    return render(request, "job.html", {"job": await _view(request, seen, job_id)})


@router.get("/{job_id}/progress")
async def job_progress(request: Request, job_id: str, seen: Viewer = ANYONE) -> Response:
    """``{"status", "terminal", "files_total", "files_done", "files_failed", "files": [{"ordinal",
    "path", "status", "atom_id", "error"}]}``; the files are those done so far."""
    view = await _view(request, seen, job_id)
    return JSONResponse(
        {
            "status": view.status,
            "terminal": view.terminal,
            "files_total": view.files_total,
            "files_done": view.files_done,
            "files_failed": view.files_failed,
            "files": [
                {
                    "ordinal": f.ordinal,
                    "path": f.path,
                    "status": f.status,
                    "atom_id": f.atom_id,
                    "error": f.error,
                }
                for f in view.files
            ],
        },
        headers={"Cache-Control": "no-store"},
    )
