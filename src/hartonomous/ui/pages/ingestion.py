"""Ingestion: upload files or a folder as one job, follow each file to its outcome, and the
tenant's job history (docs/admin-ui.md, "Ingestion").

`POST /ui/ingest` takes the same multipart body as `POST /v1/ingest` (parts named ``files``),
read by the API's one reader (streamed to a spool on disk, refused past
``[server] max_upload_bytes``) and ingested by ``services.ingestion.start_upload_ingestion``
into the tenant acted for (private holdings, source type ``upload``). The page's script sends
it with ``XMLHttpRequest`` (upload progress per file; CSRF token in ``X-CSRF-Token``) and is
answered with JSON ``{"job_id", "job_url", "progress_url"}``; without a script the form posts
(CSRF token in the body) and is redirected to the job's page. A refused upload is named beside
the file field (JSON ``{"error"}`` to the script) and nothing is ingested.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, RedirectResponse, Response

from hartonomous.errors import HartonomousError
from hartonomous.ingest.pipeline import IngestRequest
from hartonomous.ingest.uploads import UploadSpool
from hartonomous.services.ingestion import job_history, start_upload_ingestion
from hartonomous.ui.access import ANYONE, Viewer, check_csrf, platform_of
from hartonomous.ui.rendering import render
from hartonomous.ui.uploads import file_receiver, refusal

router = APIRouter()
HISTORY_PAGE = 20
_CSRF_FIELD_BYTES = 256


async def _page(
    request: Request, seen: Viewer, errors: dict[str, str], status_code: int = 200
) -> Response:
    # An empty cursor is refused (400) as on every listing, not read as the first page.
    cursor = request.query_params.get("cursor")
    history = await run_in_threadpool(
        job_history, platform_of(request), seen.tenant_id, HISTORY_PAGE, cursor
    )
    context: dict[str, Any] = {
        "section": "ingest",
        "history": history,
        "cursor": cursor,
        "errors": errors,
        "max_bytes": platform_of(request).settings.server.max_upload_bytes,
    }
    return render(request, "ingest.html", context, status_code=status_code)


@router.get("/ingest")
async def ingest_page(request: Request, seen: Viewer = ANYONE) -> Response:
    return await _page(request, seen, {})


@router.post("/ingest")
async def ingest_upload(request: Request, seen: Viewer = ANYONE) -> Response:
    scripted = request.headers.get("accept", "").startswith("application/json")
    header_token = request.headers.get("x-csrf-token")
    if header_token is not None:  # refused before a byte of the body is read
        check_csrf(header_token, seen)
    elif not request.headers.get("content-type", "").startswith("multipart/form-data"):
        check_csrf(None, seen)  # no token in the header and no form to carry one: 403 first
    platform = platform_of(request)
    spool = await run_in_threadpool(UploadSpool, platform.settings.data_dir)
    try:
        fields = await file_receiver(request)(
            request,
            spool,
            platform.settings.server.max_upload_bytes,
            {"csrf_token": _CSRF_FIELD_BYTES},
        )
        if header_token is None:
            check_csrf(fields.get("csrf_token"), seen)
        job_id = await run_in_threadpool(
            start_upload_ingestion,
            platform,
            IngestRequest(
                tenant_id=seen.tenant_id,
                principal_id=seen.caller.principal_id,
                source_type="upload",
            ),
            spool,
        )
    except HartonomousError as exc:
        await run_in_threadpool(spool.remove)
        said = refusal(exc, spool, "choose files or a folder")
        if scripted:
            return JSONResponse({"error": said}, status_code=exc.http_status)
        if exc.http_status not in (400, 413):
            raise
        return await _page(request, seen, {"files": said}, exc.http_status)
    except BaseException:
        await run_in_threadpool(spool.remove)
        raise
    job_url = f"/ui/jobs/{job_id}"
    if scripted:
        return JSONResponse(
            {"job_id": str(job_id), "job_url": job_url, "progress_url": f"{job_url}/progress"},
            status_code=202,
        )
    return RedirectResponse(job_url, status_code=303)
