"""Models (data scientists and admins): the models whose file the tenant acted for holds, and
one model's tensors (name, dtype, shape, parameters, bytes) with what it shares with the
tenant's other models, from ``services.models``. Another tenant's model is a 404 page, as in
the API."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from hartonomous.security.roles import Role
from hartonomous.services.atoms import parse_atom_id
from hartonomous.services.models import list_models, model_sharing, show_model
from hartonomous.ui.access import Viewer, platform_of, viewer
from hartonomous.ui.rendering import render

router = APIRouter(prefix="/models")
_SCIENTIST = Depends(viewer(Role.DATA_SCIENTIST))
TENSORS_SHOWN = 500


@router.get("")
async def models(request: Request, seen: Viewer = _SCIENTIST) -> Response:
    found = await run_in_threadpool(list_models, platform_of(request), seen.tenant_id)
    return render(request, "models.html", {"models": found.items})


@router.get("/{model_id}")
async def model(request: Request, model_id: str, seen: Viewer = _SCIENTIST) -> Response:
    raw = parse_atom_id(model_id)
    platform = platform_of(request)
    details = await run_in_threadpool(
        lambda: show_model(platform, seen.tenant_id, raw, tensors=TENSORS_SHOWN)
    )
    sharing = await run_in_threadpool(model_sharing, platform, seen.tenant_id, raw)
    return render(
        request, "model.html", {"model": details, "shown": TENSORS_SHOWN, "sharing": sharing}
    )
