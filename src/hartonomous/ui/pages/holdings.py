"""A holding of the tenant acted for: its source, metadata, atom and job; released behind a
confirmation (any role may release its tenant's holdings, as ``DELETE /v1/holdings/{id}``).
Another tenant's holding is a 404 page (``services.holdings`` reads the tenant's only)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from hartonomous.services.atoms import parse_atom_id
from hartonomous.services.holdings import (
    HoldingNotFoundError,
    delete_holding,
    holding_reaching,
    show_holding,
)
from hartonomous.ui.access import ANYONE, Viewer, checked_form, flashes_of, platform_of
from hartonomous.ui.rendering import render

router = APIRouter(prefix="/holdings")


def _holding_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise HoldingNotFoundError(f"holding {text[:64]!r} not found: not a holding id") from None


@router.get("/for")
async def holding_for(
    request: Request, atom_id: str, source: str, seen: Viewer = ANYONE
) -> Response:
    """A search hit's holding (its atom and source): redirected to its page, 404 without."""
    raw = parse_atom_id(atom_id)
    found = await run_in_threadpool(
        holding_reaching, platform_of(request), seen.tenant_id, raw, source
    )
    return RedirectResponse(f"/ui/holdings/{found}", status_code=303)


@router.get("/released")
async def released(
    request: Request,
    seen: Viewer = ANYONE,
    flash: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """Where a release is sent (Post/Redirect/Get): the source released, shown once."""
    source_uri = flashes_of(request).take(seen.session, flash)
    return render(request, "holding_released.html", {"source_uri": source_uri})


@router.get("/{holding_id}")
async def holding(request: Request, holding_id: str, seen: Viewer = ANYONE) -> Response:
    details = await run_in_threadpool(
        show_holding, platform_of(request), seen.tenant_id, _holding_id(holding_id)
    )
    return render(request, "holding.html", {"holding": details})


@router.post("/{holding_id}/release")
async def release(request: Request, holding_id: str, seen: Viewer = ANYONE) -> Response:
    """First post: a confirmation asked (nothing changed); with ``confirm=yes``: the holding
    released and a 303 to ``/ui/holdings/released`` (a reload releases nothing)."""
    form = await checked_form(request, seen)
    platform = platform_of(request)
    parsed = _holding_id(holding_id)
    details = await run_in_threadpool(show_holding, platform, seen.tenant_id, parsed)
    if form.get("confirm") != "yes":
        return render(request, "holding_confirm.html", {"holding": details})
    await run_in_threadpool(delete_holding, platform, seen.tenant_id, parsed)
    flash = flashes_of(request).put(seen.session, details.source_uri)
    return RedirectResponse(f"/ui/holdings/released?flash={flash}", status_code=303)
