"""An atom of the tenant acted for: metadata, children, the tenant's holdings of it, its exact
bytes to download, and its lineage up or down N steps drawn as a picture. An atom the tenant
holds nothing of is a 404 page, as in the API."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from hartonomous.services.atoms import atom_content, atom_media, parse_atom_id, show_atom
from hartonomous.services.lineage import MAX_DEPTH, lineage
from hartonomous.ui.access import ANYONE, Viewer, platform_of
from hartonomous.ui.lineage_picture import BOX_HEIGHT, BOX_WIDTH, lay_out
from hartonomous.ui.rendering import render

router = APIRouter(prefix="/atoms")
MEDIA_MAX_BYTES = 16 * 1024 * 1024
"""Largest image or sound served for a thumbnail or a player (bytes); larger ones are
downloaded from their content link instead."""


@router.get("/{atom_id}")
async def atom(
    request: Request,
    atom_id: str,
    seen: Viewer = ANYONE,
    direction: Literal["up", "down"] = "down",
    depth: Annotated[int, Query(ge=1, le=MAX_DEPTH)] = 2,
) -> Response:
    platform = platform_of(request)
    raw = parse_atom_id(atom_id)  # AtomIdError (400) for text that is not an atom id
    summary = await run_in_threadpool(show_atom, platform, seen.tenant_id, raw)
    walk = await run_in_threadpool(lineage, platform, seen.tenant_id, raw.hex(), direction, depth)
    return render(
        request,
        "atom.html",
        {
            "atom": summary,
            "walk": walk,
            "picture": lay_out(walk, upward=direction == "up"),
            "box": {"width": BOX_WIDTH, "height": BOX_HEIGHT},
            "direction": direction,
            "depth": depth,
            "max_depth": MAX_DEPTH,
        },
    )


@router.get("/{atom_id}/content")
async def content(request: Request, atom_id: str, seen: Viewer = ANYONE) -> Response:
    """The atom's exact bytes, streamed (``application/octet-stream``, as a download)."""
    raw = parse_atom_id(atom_id)
    found = await run_in_threadpool(atom_content, platform_of(request), seen.tenant_id, raw)
    return StreamingResponse(
        found.chunks(),
        media_type="application/octet-stream",
        headers={
            "Content-Length": str(found.size_bytes),
            "Content-Disposition": f'attachment; filename="{raw.hex()}.bin"',
        },
    )


@router.get("/{atom_id}/media")
async def media(request: Request, atom_id: str, seen: Viewer = ANYONE) -> Response:
    """An image or sound atom's bytes with its media type (``services.atoms.atom_media``), for
    thumbnails and players: 404 for another kind of atom, 413 over ``MEDIA_MAX_BYTES``."""
    raw = parse_atom_id(atom_id)
    found = await run_in_threadpool(
        atom_media, platform_of(request), seen.tenant_id, raw, MEDIA_MAX_BYTES
    )
    return StreamingResponse(
        found.content.chunks(),
        media_type=found.media_type,
        headers={
            "Content-Length": str(found.content.size_bytes),
            # Content-addressed: the bytes of an id never change; private to the session.
            "Cache-Control": "private, max-age=86400, immutable",
            "X-Content-Type-Options": "nosniff",
        },
    )
