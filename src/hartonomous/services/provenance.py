"""`explain INFERENCE`, `streams show ID` and their API routes (`GET /v1/inference/{id}/explain`,
`GET /v1/streams/{id}`): one inference's provenance and cost, and its generation stream
decoded or raw (docs/provenance.md). Another tenant's inference or stream is "not found".
"""

from __future__ import annotations

import uuid

from hartonomous.errors import UsageError
from hartonomous.inference.explain import Explanation, explain
from hartonomous.inference.lookup import parse_inference_id
from hartonomous.inference.stream_view import DecodedStream, decode_stream, read_stream
from hartonomous.security.tenants import require_active_tenant
from hartonomous.services.database_errors import database_errors
from hartonomous.services.platform import Platform

__all__ = ["explain_inference", "show_stream", "stream_bytes"]


def _uuid(identifier: str, what: str) -> uuid.UUID:
    parsed = parse_inference_id(identifier)
    if parsed is None:
        raise UsageError(f"{identifier!r} is not {what} id (a UUID)")
    return parsed


def explain_inference(platform: Platform, tenant_id: str, inference_id: str) -> Explanation:
    """Inputs with their sources, the model with its tensor summary, steps with timings,
    outputs, the stream's segments, the ledger cost, rating and feedback.

    Raises ``UsageError`` (not a UUID), ``InferenceNotFoundError``, ``AtomicStreamError``
    (stored bytes that do not decode), ``UnknownTenantError`` / ``TenantDisabledError``.
    """
    wanted = _uuid(inference_id, "an inference")
    with database_errors(), platform.engine.connect() as connection:
        require_active_tenant(connection, tenant_id)
        return explain(connection, tenant_id, wanted)


def show_stream(platform: Platform, tenant_id: str, stream_id: str) -> DecodedStream:
    """The stream's header and decoded segments. Raises ``UsageError`` (not a UUID),
    ``StreamNotFoundError``, ``AtomicStreamError``, tenant errors as above."""
    wanted = _uuid(stream_id, "a stream")
    with database_errors(), platform.engine.connect() as connection:
        require_active_tenant(connection, tenant_id)
        return decode_stream(read_stream(connection, tenant_id, wanted))


def stream_bytes(platform: Platform, tenant_id: str, stream_id: str) -> bytes:
    """The stream's AtomicStream bytes as stored (docs/provenance.md, "Binary layout").
    Raises ``UsageError`` (not a UUID), ``StreamNotFoundError``, tenant errors as above."""
    wanted = _uuid(stream_id, "a stream")
    with database_errors(), platform.engine.connect() as connection:
        require_active_tenant(connection, tenant_id)
        return read_stream(connection, tenant_id, wanted).stream
