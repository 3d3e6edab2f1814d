"""Search by text (hybrid, semantic or lexical) with filters, in the tenant acted for:
results with score, source, modality and an excerpt (``services.search``, docs/search.md).
An input the search refuses is named beside its field."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from hartonomous.search.service import SearchError
from hartonomous.services import search as search_service
from hartonomous.ui.access import ANYONE, Viewer, platform_of
from hartonomous.ui.rendering import render

router = APIRouter()
EXCERPT_CHARACTERS = 300


def _field_of(message: str) -> str:
    """Which field a ``SearchError`` is about (its message names the field)."""
    if message.startswith("k "):
        return "k"
    if "modality" in message:
        return "modality"
    if "source type" in message:
        return "source_type"
    if "search mode" in message:
        return "mode"
    return "q"


@router.get("/search")
async def search_page(request: Request, seen: Viewer = ANYONE) -> Response:
    params = request.query_params
    values: dict[str, Any] = {
        "q": params.get("q", ""),
        "mode": params.get("mode", "hybrid"),
        "modality": params.get("modality", ""),
        "source_type": params.get("source_type", ""),
        "k": params.get("k", "10"),
    }
    context: dict[str, Any] = {
        "values": values,
        "errors": {},
        "result": None,
        "modes": search_service.SEARCH_MODES,
        "modalities": search_service.FILE_MODALITIES,
        "source_types": search_service.SOURCE_TYPES,
        "max_k": search_service.MAX_K,
        "excerpt": EXCERPT_CHARACTERS,
    }
    if "q" not in params:
        return render(request, "search.html", context)
    errors: dict[str, str] = {}
    k = 0
    try:
        k = int(values["k"])
    except ValueError:
        errors["k"] = f"k must be a whole number from 1 to {search_service.MAX_K}"
    if not errors:
        filters = search_service.search_filters(
            source_modality=values["modality"] or None,
            source_type=values["source_type"] or None,
        )
        try:
            context["result"] = await run_in_threadpool(
                lambda: search_service.search(
                    platform_of(request),
                    seen.tenant_id,
                    search_service.Query(text=values["q"]),
                    k,
                    mode=values["mode"],
                    filters=filters,
                )
            )
        except SearchError as exc:
            errors[_field_of(str(exc))] = str(exc)
    context["errors"] = errors
    return render(request, "search.html", context, status_code=400 if errors else 200)
