"""Search in the tenant acted for: by text (hybrid, semantic or lexical) with filters, or by an
example image or sound (`POST /ui/search/by-example`, the multipart body of
`POST /v1/search/by-example`, read by the API's one reader); results with score, source,
modality, an excerpt and, for images and sounds, a thumbnail or a player
(``services.search``, docs/search.md, docs/admin-ui.md). An input the search refuses is named
beside its field."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from hartonomous.errors import HartonomousError
from hartonomous.ingest.uploads import UploadSpool
from hartonomous.search.service import SearchError
from hartonomous.services import search as search_service
from hartonomous.ui.access import ANYONE, Viewer, check_csrf, platform_of
from hartonomous.ui.rendering import render
from hartonomous.ui.uploads import file_receiver, refusal

router = APIRouter()
EXCERPT_CHARACTERS = 300
EXAMPLE_MODES = ("semantic", "hybrid")  # an example has no words: hybrid is its semantic part
_EXAMPLE_FIELDS = dict.fromkeys(("csrf_token", "k", "mode", "modality", "source_type"), 256)


def _field_of(message: str, query_field: str = "q") -> str:
    """Which field a ``SearchError`` is about (its message names the field)."""
    if message.startswith("k "):
        return "k"
    if "modality" in message:
        return "modality"
    if "source type" in message:
        return "source_type"
    if "search mode" in message:
        return "mode"
    return query_field


def _context(values: dict[str, Any]) -> dict[str, Any]:
    return {
        "section": "search",
        "values": values,
        "errors": {},
        "result": None,
        "modes": search_service.SEARCH_MODES,
        "example_modes": EXAMPLE_MODES,
        "modalities": search_service.FILE_MODALITIES,
        "source_types": search_service.SOURCE_TYPES,
        "max_k": search_service.MAX_K,
        "excerpt": EXCERPT_CHARACTERS,
        "by_example": False,
    }


def _whole_k(text: str, errors: dict[str, str]) -> int:
    try:
        return int(text)
    except ValueError:
        errors["k"] = f"k must be a whole number from 1 to {search_service.MAX_K}"
        return 0


@router.get("/search")
async def search_page(request: Request, seen: Viewer = ANYONE) -> Response:
    params = request.query_params
    values: dict[str, Any] = {
        "q": params.get("q", ""),
        "mode": params.get("mode", "hybrid"),
        "modality": params.get("modality", ""),
        "source_type": params.get("source_type", ""),
        "k": params.get("k", "10"),
        "example_mode": "semantic",
        "example_modality": "",
        "example_source_type": "",
        "example_k": "10",
    }
    context = _context(values)
    if "q" not in params:
        return render(request, "search.html", context)
    errors: dict[str, str] = {}
    k = _whole_k(values["k"], errors)
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


@router.post("/search/by-example")
async def search_by_example(request: Request, seen: Viewer = ANYONE) -> Response:
    """The form's file (field ``example``, at most ``MAX_EXAMPLE_BYTES`` of body) and options;
    the page with the results, or with what was refused beside its field."""
    platform = platform_of(request)
    spool = await run_in_threadpool(UploadSpool, platform.settings.data_dir)
    errors: dict[str, str] = {}
    fields: dict[str, str] = {}
    result = None
    try:
        try:
            fields = await file_receiver(request)(
                request,
                spool,
                search_service.MAX_EXAMPLE_BYTES,
                _EXAMPLE_FIELDS,
                file_field="example",
                limit_setting=None,
            )
        except HartonomousError as exc:
            if exc.http_status not in (400, 413):
                raise
            errors["example"] = refusal(exc, spool, "choose an image or sound")
        if not errors:  # a body refused unread does nothing: only a search needs the token
            check_csrf(fields.get("csrf_token"), seen)
        if not errors and len(spool.files) != 1:
            errors["example"] = "choose one image or sound, not several"
        k = _whole_k(fields.get("k", "10"), errors)
        mode = fields.get("mode", "semantic")
        if mode not in EXAMPLE_MODES:
            errors["mode"] = f"unknown mode {mode!r} for an example (semantic or hybrid)"
        if not errors:
            ((name, path),) = spool.files
            filters = search_service.search_filters(
                source_modality=fields.get("modality") or None,
                source_type=fields.get("source_type") or None,
            )

            def run() -> search_service.SearchResult:
                example = search_service.example_from_file(path, name)
                return search_service.search(
                    platform,
                    seen.tenant_id,
                    search_service.Query(like=example),
                    k,
                    mode=mode,
                    filters=filters,
                )

            try:
                result = await run_in_threadpool(run)
            except SearchError as exc:
                errors[_field_of(str(exc), "example")] = str(exc)
    finally:
        await run_in_threadpool(spool.remove)
    values = {"q": "", "mode": "hybrid", "modality": "", "source_type": "", "k": "10"}
    for name in ("mode", "modality", "source_type", "k"):  # the example form's own fields
        values[f"example_{name}"] = fields.get(name, "semantic" if name == "mode" else "")
    values["example_k"] = values["example_k"] or "10"
    context = _context(values)
    context.update(
        errors={name if name == "example" else f"example_{name}": e for name, e in errors.items()},
        result=result,
        by_example=True,
    )
    return render(request, "search.html", context, status_code=400 if errors else 200)
