"""`GET /v1/inference/{inference_id}/explain` and `GET /v1/streams/{stream_id}` (role `user`):
one inference's provenance and cost, and its generation stream decoded or raw
(`services.provenance`, docs/provenance.md). Another tenant's inference or stream is 404.

`/v1/streams/{stream_id}` answers the decoded view as JSON, or the stored AtomicStream bytes
(`application/octet-stream`) with `?format=raw` or when `Accept` asks for
`application/octet-stream` (and not for JSON).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import Depends, Header, Query, Request, Response

from hartonomous.api.auth import Caller, platform_of, requires
from hartonomous.api.routing import api_router
from hartonomous.inference.explain import Explanation
from hartonomous.inference.stream_view import DecodedStream
from hartonomous.security.roles import Role
from hartonomous.services import provenance

explain_router = api_router(prefix="/v1/inference", tags=["provenance"])
streams_router = api_router(prefix="/v1/streams", tags=["provenance"])
_needs = Depends(requires(Role.USER))
OCTET_STREAM = "application/octet-stream"


@explain_router.get("/{inference_id}/explain", response_model=Explanation)
def explain(inference_id: uuid.UUID, request: Request, caller: Caller = _needs) -> Any:
    """Inputs with their sources, the model with its tensor summary, steps with timings,
    outputs, the stream's decoded segments, the ledger cost (decimal strings; `state` is
    `not yet billed` until the sync worker has recorded it), rating and feedback."""
    return provenance.explain_inference(platform_of(request), caller.tenant_id, str(inference_id))


def _wants_raw(format_: str | None, accept: str | None) -> bool:
    if format_ is not None:
        return format_ == "raw"
    if not accept:
        return False
    media = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    return OCTET_STREAM in media and not media & {"application/json", "*/*", "application/*"}


@streams_router.get(
    "/{stream_id}",
    response_model=DecodedStream,
    responses={
        200: {"content": {OCTET_STREAM: {"schema": {"type": "string", "format": "binary"}}}}
    },
)
def show_stream(
    stream_id: uuid.UUID,
    request: Request,
    caller: Caller = _needs,
    format_: Annotated[
        Literal["decoded", "raw"] | None,
        Query(alias="format", description="decoded (JSON, the default) or raw (the bytes)"),
    ] = None,
    accept: Annotated[str | None, Header()] = None,
) -> Any:
    """The stream's header and segments (kind, timestamp, content type, metadata, payload as
    text or Base64), or its AtomicStream bytes (`?format=raw` or `Accept:
    application/octet-stream`)."""
    platform = platform_of(request)
    if _wants_raw(format_, accept):
        data = provenance.stream_bytes(platform, caller.tenant_id, str(stream_id))
        return Response(content=data, media_type=OCTET_STREAM)
    return provenance.show_stream(platform, caller.tenant_id, str(stream_id))
