"""Inference (any role, as `/v1/inference`): the tenant's inference requests newest first
(``services.inference.history``), and one request's status with its explanation
(``services.provenance.explain_inference``: inputs and their sources, model, steps, outputs,
the generation stream's segments, the ledger's cost), as `hartonomous explain` prints it.
The page of a request still running refreshes its status region every 2 seconds (htmx).
Another tenant's request is a 404 page, an id that is not a UUID a 400."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from hartonomous.services import inference as inference_service
from hartonomous.services.provenance import explain_inference
from hartonomous.ui.access import ANYONE, Viewer, platform_of
from hartonomous.ui.rendering import render

router = APIRouter(prefix="/inference")
HISTORY_PAGE = 50
REFRESH_SECONDS = 2


@router.get("")
async def inference_history(request: Request, seen: Viewer = ANYONE) -> Response:
    # An empty cursor is refused (400) as on every listing, not read as the first page.
    cursor = request.query_params.get("cursor")
    page = await run_in_threadpool(
        inference_service.history, platform_of(request), seen.tenant_id, HISTORY_PAGE, cursor
    )
    return render(
        request, "inferences.html", {"section": "inference", "page": page, "cursor": cursor}
    )


@router.get("/{inference_id}")
async def inference(request: Request, inference_id: str, seen: Viewer = ANYONE) -> Response:
    found = await run_in_threadpool(
        explain_inference, platform_of(request), seen.tenant_id, inference_id
    )
    return render(
        request,
        "inference.html",
        {
            "section": "inference",
            "e": found,
            "running": found.status in ("pending", "in_progress"),
            "refresh": REFRESH_SECONDS,
            "output_json": None
            if found.output is None
            else json.dumps(found.output, indent=2, sort_keys=True),
        },
    )
