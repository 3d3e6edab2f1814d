"""`/v1/atoms`: an atom's metadata and its exact bytes (docs/api.md, "Atoms").

Content is streamed in leaf-payload chunks with ``ETag`` = the atom id (the SHA-256 of the
bytes, so a strong validator), ``If-None-Match`` (304) and single byte ranges (206, 416):
api/ranges.py. Another tenant's atom is 404, like one that does not exist.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import Depends, Header, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from hartonomous.api.auth import Caller, platform_of, requires
from hartonomous.api.fields import AtomId
from hartonomous.api.problems import problem_response
from hartonomous.api.ranges import RangeNotSatisfiable, etag_of, matches_etag, requested_range
from hartonomous.api.routes.holdings import HoldingModel
from hartonomous.api.routing import api_router
from hartonomous.security.roles import Role
from hartonomous.services.atoms import atom_content, parse_atom_id, show_atom

router = api_router(prefix="/v1/atoms", tags=["atoms"])

_user = requires(Role.USER)
_BINARY = {"schema": {"type": "string", "format": "binary"}}


class AtomChildren(BaseModel):
    """A composite's children: `runs` component rows covering `components` children
    (repeats expanded), `distinct` different atoms; all 0 for a leaf."""

    runs: int
    components: int
    distinct: int


class AtomModel(BaseModel):
    """An atom (docs/atoms.md) and the caller's holdings that contain it."""

    atom_id: str
    kind: Literal["leaf", "composite"]
    modality: str
    subtype: str
    size_bytes: int
    # No reference count: it counts every tenant's references, and watching it would tell a
    # tenant when others hold the same bytes (docs/security.md, "Shared content: atoms").
    canonical_text: str | None
    metadata: dict[str, Any]
    children: AtomChildren
    holders: list[HoldingModel]


@router.get("/{atom_id}", response_model=AtomModel, summary="An atom's metadata")
def get_atom(
    request: Request,
    atom_id: AtomId,
    caller: Caller = Depends(_user),  # noqa: B008
) -> AtomModel:
    """Kind, size, text, children summary and the caller's holdings of it."""
    summary = show_atom(platform_of(request), caller.tenant_id, parse_atom_id(atom_id))
    return AtomModel(
        atom_id=summary.atom_id,
        kind=summary.kind,
        modality=summary.modality,
        subtype=summary.subtype,
        size_bytes=summary.size_bytes,
        canonical_text=summary.canonical_text,
        metadata=summary.metadata,
        children=AtomChildren(
            runs=summary.runs, components=summary.components, distinct=summary.distinct_children
        ),
        holders=[HoldingModel.model_validate(holder) for holder in summary.holders],
    )


@router.get(
    "/{atom_id}/content",
    summary="An atom's exact bytes (streamed; ETag, Range)",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/octet-stream": _BINARY}, "description": "The bytes"},
        206: {"content": {"application/octet-stream": _BINARY}, "description": "One range"},
        304: {"description": "Not modified: If-None-Match names the atom"},
        416: {
            "description": "Range not satisfiable (a problem; Content-Range: bytes */size)",
            "content": {"application/problem+json": {"schema": {"type": "object"}}},
        },
    },
)
def get_atom_content(
    request: Request,
    atom_id: AtomId,
    *,
    range_header: str | None = Header(None, alias="Range"),
    if_none_match: str | None = Header(None),
    if_range: str | None = Header(None),
    caller: Caller = Depends(_user),  # noqa: B008
) -> Response:
    """The atom's original bytes, whole (200) or one byte range (206)."""
    digest = parse_atom_id(atom_id)
    content = atom_content(platform_of(request), caller.tenant_id, digest)
    etag = etag_of(digest.hex())
    headers = {"ETag": etag, "Accept-Ranges": "bytes", "Cache-Control": "private, immutable"}
    if matches_etag(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    try:
        wanted = requested_range(range_header, if_range, etag, content.size_bytes)
    except RangeNotSatisfiable as exc:
        return problem_response(
            request,
            status=416,
            code="range-not-satisfiable",
            title="Range not satisfiable",
            detail=str(exc),
            headers={"Content-Range": f"bytes */{exc.size}"},
        )
    if wanted is None:
        headers["Content-Length"] = str(content.size_bytes)
        return StreamingResponse(
            content.chunks(), media_type="application/octet-stream", headers=headers
        )
    headers["Content-Range"] = wanted.content_range
    headers["Content-Length"] = str(wanted.stop - wanted.start)
    return StreamingResponse(
        content.chunks(wanted.start, wanted.stop),
        status_code=206,
        media_type="application/octet-stream",
        headers=headers,
    )
