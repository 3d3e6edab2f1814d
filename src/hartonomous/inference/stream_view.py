"""A tenant's generation streams: the stored AtomicStream bytes and their decoded view
(docs/provenance.md, "Reading a stream").

A segment's payload is shown as text when its content type says it is text (a `charset`
parameter, `text/*`, JSON or XML) and it decodes in that charset (UTF-8 when none is named);
otherwise as standard Base64.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import Connection, select

from hartonomous.db.tables import generation_streams
from hartonomous.errors import NotFoundError
from hartonomous.provenance import AtomicStream, Segment

__all__ = [
    "DecodedSegment",
    "DecodedStream",
    "StoredStream",
    "StreamNotFoundError",
    "decode_segment",
    "decode_stream",
    "read_stream",
]

PayloadEncoding = Literal["text", "base64"]
_TEXT_TYPES = ("application/json", "application/xml", "application/x-ndjson")


class StreamNotFoundError(NotFoundError, LookupError):
    """No such generation stream for this tenant."""


@dataclass(frozen=True)
class StoredStream:
    """A `generation_streams` row: ``size`` in bytes, ``stream`` the AtomicStream bytes."""

    stream_id: uuid.UUID
    inference_id: uuid.UUID
    scope: str
    model: str
    created_at: datetime
    size: int
    stream: bytes


@dataclass(frozen=True)
class DecodedSegment:
    """One segment: ``kind`` its SegmentKind name, ``timestamp`` UTC (microseconds; the exact
    .NET ticks in ``timestamp_ticks``), ``payload`` as ``encoding`` says, ``payload_size`` in
    bytes."""

    index: int
    kind: str
    timestamp: datetime
    timestamp_ticks: int
    content_type: str | None
    metadata: str | None
    payload_size: int
    encoding: PayloadEncoding
    payload: str


@dataclass(frozen=True)
class DecodedStream:
    stream_id: str
    inference_id: str
    scope: str | None
    model: str | None
    metadata: str | None
    created: datetime
    created_ticks: int
    size: int
    segments: list[DecodedSegment]


def read_stream(connection: Connection, tenant_id: str, stream_id: uuid.UUID) -> StoredStream:
    """The tenant's stream row; raises ``StreamNotFoundError`` when it has none by this id."""
    s = generation_streams.c
    row = connection.execute(
        select(s.stream_id, s.inference_id, s.scope, s.model, s.created_at, s.stream).where(
            s.tenant_id == tenant_id, s.stream_id == stream_id
        )
    ).first()
    if row is None:
        raise StreamNotFoundError(f"stream {stream_id} not found for tenant {tenant_id!r}")
    data = bytes(row.stream)
    return StoredStream(
        row.stream_id, row.inference_id, row.scope, row.model, row.created_at, len(data), data
    )


def decode_stream(stored: StoredStream) -> DecodedStream:
    """The stream's header and segments; raises ``AtomicStreamError`` (a usage error naming
    the byte offset) when the stored bytes are not a valid stream."""
    stream = AtomicStream.from_bytes(stored.stream)
    return DecodedStream(
        stream_id=str(stream.stream_id),
        inference_id=str(stored.inference_id),
        scope=stream.scope,
        model=stream.model,
        metadata=stream.metadata,
        created=stream.created,
        created_ticks=stream.created_ticks,
        size=stored.size,
        segments=[decode_segment(n, segment) for n, segment in enumerate(stream.segments)],
    )


def decode_segment(index: int, segment: Segment) -> DecodedSegment:
    encoding, payload = _payload(segment.content_type, segment.payload)
    return DecodedSegment(
        index=index,
        kind=segment.kind.name,
        timestamp=segment.timestamp,
        timestamp_ticks=segment.timestamp_ticks,
        content_type=segment.content_type,
        metadata=segment.metadata,
        payload_size=len(segment.payload),
        encoding=encoding,
        payload=payload,
    )


def _charset(content_type: str | None) -> str | None:
    """The charset a content type names, or utf-8 for a textual type without one."""
    if not content_type:
        return None
    media, *parameters = (part.strip() for part in content_type.split(";"))
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            return value.strip().strip('"')
    media = media.lower()
    if media.startswith("text/") or media in _TEXT_TYPES or media.endswith("+json"):
        return "utf-8"
    return None


def _payload(content_type: str | None, payload: bytes) -> tuple[PayloadEncoding, str]:
    charset = _charset(content_type)
    if charset is not None:
        try:
            # bytes.decode takes text encodings only (never zlib, base64 and such codecs).
            return "text", payload.decode(charset)
        except (LookupError, UnicodeDecodeError):
            pass  # an unknown charset or bytes that are not in it: shown as Base64
    return "base64", base64.b64encode(payload).decode("ascii")
