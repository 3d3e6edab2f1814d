"""AtomicStream: a generation's provenance as one binary value of ordered, typed segments.

A stream has an id (a non-nil UUID), a creation instant, an optional ``scope`` (such as
``text_generation``), ``model`` and ``metadata`` (JSON text by convention), and segments, each a
``SegmentKind``, a timestamp, an optional content type and metadata, and payload bytes. The
binary form (format version 1) is byte-compatible with the original platform's
``provenance.AtomicStream``; docs/provenance.md gives the layout, an annotated example and where
reading is stricter than the original. Base64 of it is the text form.

Time: the format stores .NET ticks (100 ns). The objects keep the tick counts exactly
(``created_ticks``, ``Segment.timestamp_ticks``), so bytes read and written again are the same
bytes; ``created`` and ``Segment.timestamp`` are datetimes derived from them, rounded down to the
microsecond. A datetime given to ``create``/``with_segment`` converts exactly (1 µs = 10 ticks).

Every defect raises ``AtomicStreamError`` (a ``UsageError``): malformed bytes name the byte
offset and what was expected there.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Self

from hartonomous.errors import UsageError
from hartonomous.provenance.dotnet import (
    INT32_MAX,
    MAX_TICKS,
    BinaryReader,
    BinaryWriter,
    datetime_from_ticks,
    dotnet_trim,
    ticks_from_datetime,
)
from hartonomous.provenance.segment_kind import SegmentKind

__all__ = [
    "FORMAT_VERSION",
    "NULL_STREAM_BYTES",
    "NULL_STREAM_TEXT",
    "AtomicStream",
    "AtomicStreamError",
    "Segment",
    "SegmentKind",
    "format_atomic_stream",
    "parse_atomic_stream",
    "read_atomic_stream",
    "write_atomic_stream",
]

FORMAT_VERSION = 1
NULL_STREAM_BYTES = b"\x01"  # isNull = true, nothing follows: the original's SQL NULL value
NULL_STREAM_TEXT = "NULL"  # the original's ToString of the null value
# The smallest segment: kind, timestamp, two absent optionals, payload length 0.
_MIN_SEGMENT_SIZE = 1 + 8 + 1 + 1 + 4
# What .NET's Convert.FromBase64String skips inside Base64 text.
_BASE64_IGNORED = dict.fromkeys(map(ord, " \t\r\n"))
_LAST_KIND = max(SegmentKind)


class AtomicStreamError(UsageError):
    """Bytes or text that are not a valid AtomicStream, or a stream that cannot be built.

    ``offset`` is the byte offset of the defect in the binary form, or None when the defect is
    not in the bytes (an argument to ``create``, text that is not Base64).
    """

    code = "invalid-atomic-stream"
    title = "Invalid AtomicStream"

    def __init__(self, message: str, *, offset: int | None = None) -> None:
        super().__init__(message if offset is None else f"AtomicStream byte {offset}: {message}")
        self.offset = offset


def _normalize_name(value: str | None) -> str | None:
    """The original's scope/model rule: trimmed, and an empty result is None."""
    if value is None:
        return None
    return dotnet_trim(value) or None


def _check_text(value: str | None, what: str) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise AtomicStreamError(f"{what} must be text or None, got {type(value).__name__}")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise AtomicStreamError(f"{what} cannot be written as UTF-8 ({exc.reason})") from None
    if size > INT32_MAX:
        raise AtomicStreamError(f"{what} is {size} bytes of UTF-8, over the {INT32_MAX} limit")


def _check_ticks(ticks: int, what: str) -> None:
    if isinstance(ticks, bool) or not isinstance(ticks, int) or not 0 <= ticks <= MAX_TICKS:
        raise AtomicStreamError(f"{what} must be ticks in 0..{MAX_TICKS}, got {ticks!r}")


def _ticks_of(value: datetime | None, what: str) -> int:
    """Ticks of an aware datetime, or of now when None."""
    try:
        return ticks_from_datetime(datetime.now(UTC) if value is None else value)
    except ValueError as exc:
        raise AtomicStreamError(f"{what}: {exc}") from None


@dataclass(frozen=True, slots=True)
class Segment:
    """One entry of a stream.

    ``timestamp_ticks`` is 100 ns units since 0001-01-01 UTC. An empty ``content_type`` or
    ``metadata`` is stored as None, because the format writes an empty one as absent.
    Raises ``AtomicStreamError`` for a field the format cannot carry.
    """

    kind: SegmentKind
    timestamp_ticks: int
    content_type: str | None
    metadata: str | None
    payload: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.kind, SegmentKind):
            raise AtomicStreamError(f"segment kind must be a SegmentKind, got {self.kind!r}")
        _check_ticks(self.timestamp_ticks, "segment timestamp")
        _check_text(self.content_type, "segment content type")
        _check_text(self.metadata, "segment metadata")
        if not isinstance(self.payload, bytes):
            raise AtomicStreamError(f"segment payload must be bytes, got {type(self.payload)}")
        if len(self.payload) > INT32_MAX:
            raise AtomicStreamError(f"segment payload is over the {INT32_MAX}-byte limit")
        # Frozen: normalising here keeps one value per meaning (written absent = read None).
        if self.content_type == "":
            object.__setattr__(self, "content_type", None)
        if self.metadata == "":
            object.__setattr__(self, "metadata", None)

    @property
    def timestamp(self) -> datetime:
        """``timestamp_ticks`` as a UTC datetime, rounded down to the microsecond."""
        return datetime_from_ticks(self.timestamp_ticks)


@dataclass(frozen=True, slots=True)
class AtomicStream:
    """An immutable stream; build one with ``create`` and ``with_segment``.

    ``created_ticks`` is 100 ns units since 0001-01-01 UTC. Constructing one directly keeps
    ``scope`` and ``model`` as given (as read from bytes); ``create`` normalises them.
    Raises ``AtomicStreamError`` for a nil ``stream_id`` or a field the format cannot carry.
    """

    stream_id: uuid.UUID
    created_ticks: int
    scope: str | None
    model: str | None
    metadata: str | None
    segments: tuple[Segment, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.stream_id, uuid.UUID) or self.stream_id.int == 0:
            raise AtomicStreamError(f"stream id must be a non-nil UUID, got {self.stream_id!r}")
        _check_ticks(self.created_ticks, "stream creation time")
        _check_text(self.scope, "stream scope")
        _check_text(self.model, "stream model")
        _check_text(self.metadata, "stream metadata")
        if not isinstance(self.segments, tuple) or not all(
            isinstance(segment, Segment) for segment in self.segments
        ):
            raise AtomicStreamError("segments must be a tuple of Segment")
        if len(self.segments) > INT32_MAX:
            raise AtomicStreamError(f"a stream holds at most {INT32_MAX} segments")

    @classmethod
    def create(
        cls,
        stream_id: uuid.UUID,
        *,
        created: datetime | None = None,
        scope: str | None = None,
        model: str | None = None,
        metadata: str | None = None,
    ) -> Self:
        """A stream with no segments, as the original's ``Create``.

        ``created`` must be timezone-aware (None means now); ``scope`` and ``model`` are trimmed
        of whitespace (.NET's rule) and an empty result is None; ``metadata`` is kept as given.
        Raises ``AtomicStreamError`` for a nil id or a naive ``created``.
        """
        return cls(
            stream_id=stream_id,
            created_ticks=_ticks_of(created, "stream creation time"),
            scope=_normalize_name(scope),
            model=_normalize_name(model),
            metadata=metadata,
        )

    def with_segment(
        self,
        kind: SegmentKind | str | None,
        payload: bytes | bytearray | memoryview | None = None,
        *,
        timestamp: datetime | None = None,
        content_type: str | None = None,
        metadata: str | None = None,
    ) -> Self:
        """A new stream with one more segment, as the original's ``AddSegment``.

        ``kind`` is a ``SegmentKind`` or a name for ``SegmentKind.parse``; ``payload`` is copied
        (None is empty); ``timestamp`` must be timezone-aware (None means now).
        Raises ``AtomicStreamError`` for a naive ``timestamp`` or a field the format cannot carry.
        """
        segment = Segment(
            kind=kind if isinstance(kind, SegmentKind) else SegmentKind.parse(kind),
            timestamp_ticks=_ticks_of(timestamp, "segment timestamp"),
            content_type=content_type,
            metadata=metadata,
            payload=b"" if payload is None else bytes(payload),
        )
        return type(self)(
            stream_id=self.stream_id,
            created_ticks=self.created_ticks,
            scope=self.scope,
            model=self.model,
            metadata=self.metadata,
            segments=(*self.segments, segment),
        )

    @property
    def created(self) -> datetime:
        """``created_ticks`` as a UTC datetime, rounded down to the microsecond."""
        return datetime_from_ticks(self.created_ticks)

    def to_bytes(self) -> bytes:
        """The version-1 binary form (docs/provenance.md)."""
        return write_atomic_stream(self)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> AtomicStream:
        """Read the binary form; the null form is an error here (see ``read_atomic_stream``).

        Raises ``AtomicStreamError`` naming the byte offset of the first defect.
        """
        stream = read_atomic_stream(data)
        if stream is None:
            raise AtomicStreamError("expected a stream, got the null value (isNull = 1)", offset=0)
        return stream

    def to_base64(self) -> str:
        """The text form: Base64 of ``to_bytes()`` (the original's ``ToString``)."""
        return format_atomic_stream(self)

    @classmethod
    def from_base64(cls, text: str) -> AtomicStream:
        """Read the text form; the null text is an error here (see ``parse_atomic_stream``)."""
        stream = parse_atomic_stream(text)
        if stream is None:
            raise AtomicStreamError(f"expected a stream, got the null value {text.strip()!r}")
        return stream


def write_atomic_stream(stream: AtomicStream | None) -> bytes:
    """The version-1 binary form of ``stream``; None gives ``NULL_STREAM_BYTES``."""
    writer = BinaryWriter()
    writer.write_bool(stream is None)
    if stream is None:
        return writer.getvalue()
    writer.write_int32(FORMAT_VERSION)
    writer.write_guid(stream.stream_id)
    writer.write_int64(stream.created_ticks)
    writer.write_optional_string(stream.scope)
    writer.write_optional_string(stream.model)
    writer.write_optional_string(stream.metadata)
    writer.write_int32(len(stream.segments))
    for segment in stream.segments:
        writer.write_byte(segment.kind)
        writer.write_int64(segment.timestamp_ticks)
        writer.write_optional_string(segment.content_type)
        writer.write_optional_string(segment.metadata)
        writer.write_int32(len(segment.payload))
        writer.write_bytes(segment.payload)
    return writer.getvalue()


def read_atomic_stream(data: bytes | bytearray | memoryview) -> AtomicStream | None:
    """Read the version-1 binary form strictly; the null form gives None.

    Raises ``AtomicStreamError`` naming the byte offset and what was expected for truncation,
    a version other than 1, a flag byte other than 0/1, a length beyond the remaining bytes,
    invalid UTF-8, a 7-bit length over 5 bytes, ticks outside .NET's range, a nil stream id,
    a negative segment count, a kind byte over 7, or trailing bytes.
    """
    reader = BinaryReader(data, AtomicStreamError)
    if reader.read_bool("the isNull flag"):
        reader.expect_end("the null value")
        return None
    version_at = reader.offset
    version = reader.read_int32("the format version")
    if version != FORMAT_VERSION:
        raise reader.fail(
            f"expected format version {FORMAT_VERSION}, got {version}", offset=version_at
        )
    id_at = reader.offset
    stream_id = reader.read_guid("the stream id")
    if stream_id.int == 0:
        raise reader.fail("expected a stream id, got the nil GUID", offset=id_at)
    created_ticks = _read_ticks(reader, "the creation time")
    scope = reader.read_optional_string("the scope")
    model = reader.read_optional_string("the model")
    metadata = reader.read_optional_string("the stream metadata")
    count_at = reader.offset
    count = reader.read_int32("the segment count")
    if count < 0:
        raise reader.fail(f"expected a segment count >= 0, got {count}", offset=count_at)
    room = reader.remaining // _MIN_SEGMENT_SIZE
    if count > room:
        # Checked before reading any segment, so a forged count allocates nothing.
        raise reader.fail(
            f"expected a segment count of at most {room} (a segment takes "
            f"{_MIN_SEGMENT_SIZE} bytes or more, and {reader.remaining} remain), got {count}",
            offset=count_at,
        )
    segments = tuple(_read_segment(reader, index) for index in range(count))
    reader.expect_end(f"segment {count - 1}" if count else "the segment count")
    return AtomicStream(
        stream_id=stream_id,
        created_ticks=created_ticks,
        scope=scope,
        model=model,
        metadata=metadata,
        segments=segments,
    )


def _read_ticks(reader: BinaryReader, what: str) -> int:
    start = reader.offset
    ticks = reader.read_int64(what)
    if not 0 <= ticks <= MAX_TICKS:
        raise reader.fail(f"expected {what} as ticks in 0..{MAX_TICKS}, got {ticks}", offset=start)
    return ticks


def _read_segment(reader: BinaryReader, index: int) -> Segment:
    what = f"segment {index}"
    kind_at = reader.offset
    kind = reader.read_byte(f"{what} kind")
    if kind > _LAST_KIND:
        raise reader.fail(
            f"expected {what} kind as a byte in 0..{_LAST_KIND:d}, got {kind}",
            offset=kind_at,
        )
    timestamp_ticks = _read_ticks(reader, f"{what} timestamp")
    content_type = reader.read_optional_string(f"{what} content type")
    metadata = reader.read_optional_string(f"{what} metadata")
    # The original treats a negative payload length as 0; so does this reader.
    length = max(reader.read_int32(f"{what} payload length"), 0)
    payload = reader.read_bytes(length, f"{what} payload")
    return Segment(SegmentKind(kind), timestamp_ticks, content_type, metadata, payload)


def format_atomic_stream(stream: AtomicStream | None) -> str:
    """The text form: Base64 of the binary form; None gives ``NULL_STREAM_TEXT``."""
    if stream is None:
        return NULL_STREAM_TEXT
    return base64.b64encode(write_atomic_stream(stream)).decode("ascii")


def parse_atomic_stream(text: str) -> AtomicStream | None:
    """Read the text form: Base64 (padding required) of the binary form.

    As the original's ``Parse``: text that is empty or ``NULL`` in any case after trimming
    gives None, and spaces, tabs, CR and LF inside the Base64 are ignored.
    Raises ``AtomicStreamError`` for text that is not Base64 or bytes that are not a stream.
    """
    trimmed = dotnet_trim(text)
    if not trimmed or trimmed.casefold() == NULL_STREAM_TEXT.casefold():
        return None
    compact = trimmed.translate(_BASE64_IGNORED)
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise AtomicStreamError(f"AtomicStream text is not Base64 ({exc})") from None
    return read_atomic_stream(data)
