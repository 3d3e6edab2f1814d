"""The AtomicStream persisted for every inference (docs/inference.md, "The stream").

Segments, in order: Input (the canonical request), Control (parameters: attributes, attempt,
cache hit), Embedding (the vector, when the task gives one), Telemetry (timings), Output (the
output JSON). A failed inference's stream holds its Input and a Control segment with the
error. Scope is the tenant; model is the model's atom hex or the built-in model's name.
JSON payloads and metadata are canonical JSON (``inference.canonical``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import Connection, insert

from hartonomous.db.tables import generation_streams
from hartonomous.embed.spaces import TEXT_SPACE
from hartonomous.inference.canonical import canonical_json
from hartonomous.json_types import JsonValue
from hartonomous.provenance import AtomicStream, SegmentKind

__all__ = ["BUILTIN_TEXT_MODEL", "StreamParts", "build_stream", "store_stream", "stream_row"]

BUILTIN_TEXT_MODEL = TEXT_SPACE
"""The stream's model for tasks that run the built-in text model (MiniLM, docs/embed.md)."""
JSON = "application/json"
# Embedding payload: little-endian float32 values, one per dimension.
FLOAT32_LE = "application/x-float32-le"


@dataclass(frozen=True)
class StreamParts:
    """What goes in one inference's stream; ``None`` parts are left out. ``request`` is the
    canonical request's bytes (``canonical.canonical_request``)."""

    inference_id: uuid.UUID
    tenant_id: str
    task: str
    model: str
    request: bytes
    control: Mapping[str, JsonValue]
    embedding: Sequence[float] | None = None
    telemetry: Mapping[str, JsonValue] | None = None
    output: Mapping[str, JsonValue] | None = None


def build_stream(parts: StreamParts, stream_id: uuid.UUID) -> AtomicStream:
    """The stream of ``parts`` (scope: the tenant; model: ``parts.model``)."""
    stream = AtomicStream.create(
        stream_id,
        scope=parts.tenant_id,
        model=parts.model,
        metadata=canonical_json(
            {"inference_id": str(parts.inference_id), "task": parts.task}
        ).decode(),
    )
    stream = stream.with_segment(SegmentKind.Input, parts.request, content_type=JSON)
    stream = stream.with_segment(
        SegmentKind.Control, canonical_json(dict(parts.control)), content_type=JSON
    )
    if parts.embedding is not None:
        vector = np.asarray(parts.embedding, dtype="<f4")
        stream = stream.with_segment(
            SegmentKind.Embedding,
            vector.tobytes(),
            content_type=FLOAT32_LE,
            metadata=canonical_json({"dimension": int(vector.size)}).decode(),
        )
    if parts.telemetry is not None:
        stream = stream.with_segment(
            SegmentKind.Telemetry, canonical_json(dict(parts.telemetry)), content_type=JSON
        )
    if parts.output is not None:
        stream = stream.with_segment(
            SegmentKind.Output, canonical_json(dict(parts.output)), content_type=JSON
        )
    return stream


def stream_row(parts: StreamParts, stream_id: uuid.UUID) -> dict[str, object]:
    """The `generation_streams` row of ``parts``' stream."""
    stream = build_stream(parts, stream_id)
    return {
        "tenant_id": parts.tenant_id,
        "stream_id": stream_id,
        "inference_id": parts.inference_id,
        "scope": (stream.scope or "")[:128],
        "model": (stream.model or "")[:128],
        "stream": stream.to_bytes(),
    }


def store_stream(
    connection: Connection, parts: StreamParts, stream_id: uuid.UUID | None = None
) -> uuid.UUID:
    """Build the stream and insert its `generation_streams` row (a new id when None); its id."""
    stream_id = stream_id or uuid.uuid4()
    connection.execute(insert(generation_streams).values(stream_row(parts, stream_id)))
    return stream_id
