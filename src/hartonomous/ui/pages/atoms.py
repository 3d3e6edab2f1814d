"""An atom of the tenant acted for: metadata, children, the tenant's holdings of it, its exact
bytes to download, and its lineage up or down N steps drawn as a picture. An atom the tenant
holds nothing of is a 404 page, as in the API."""

from __future__ import annotations

import re
from typing import Literal

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from hartonomous.errors import echoed
from hartonomous.services.atoms import atom_content, atom_media, parse_atom_id, show_atom
from hartonomous.services.lineage import MAX_DEPTH, lineage
from hartonomous.ui.access import ANYONE, Viewer, platform_of
from hartonomous.ui.lineage_picture import BOX_HEIGHT, BOX_WIDTH, lay_out
from hartonomous.ui.rendering import render

router = APIRouter(prefix="/atoms")
_DEPTH = 2  # lineage steps drawn when none are asked for
MEDIA_MAX_BYTES = 16 * 1024 * 1024
"""Largest image or sound served for a thumbnail or a player (bytes); larger ones are
downloaded from their content link instead."""


@router.get("/{atom_id}")
async def atom(
    request: Request,
    atom_id: str,
    seen: Viewer = ANYONE,
    direction: str = "down",
    depth: str = str(_DEPTH),
) -> Response:
    """The atom's page; a ``depth`` that is not 1..MAX_DEPTH or a ``direction`` not up or
    down is said beside its field (400) and the picture drawn with the default."""
    platform = platform_of(request)
    raw = parse_atom_id(atom_id)  # AtomIdError (400) for text that is not an atom id
    summary = await run_in_threadpool(show_atom, platform, seen.tenant_id, raw)
    errors: dict[str, str] = {}
    steps = int(depth) if re.fullmatch(r"[0-9]{1,4}", depth.strip()) else 0
    if not 1 <= steps <= MAX_DEPTH:
        errors["depth"] = f"steps must be a whole number from 1 to {MAX_DEPTH}: {echoed(depth)}"
        steps = _DEPTH
    way: Literal["up", "down"] = "up" if direction == "up" else "down"
    if direction not in ("up", "down"):
        errors["direction"] = f"direction must be up or down: {echoed(direction)}"
    walk = await run_in_threadpool(lineage, platform, seen.tenant_id, raw.hex(), way, steps)
    return render(
        request,
        "atom.html",
        {
            "atom": summary,
            "walk": walk,
            "picture": lay_out(walk, upward=way == "up"),
            "box": {"width": BOX_WIDTH, "height": BOX_HEIGHT},
            "direction": way,
            "depth": steps,
            "asked_depth": depth,
            "errors": errors,
            "max_depth": MAX_DEPTH,
        },
        status_code=400 if errors else 200,
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
