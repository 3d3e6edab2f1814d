"""HTTP conditional and range requests over immutable, content-addressed bytes (RFC 9110).

An atom's id is the SHA-256 of its bytes, so it is a strong entity tag that never changes:
``ETag: "<atom id>"``. ``If-None-Match`` naming it (or ``*``) answers 304. One byte range
(``bytes=a-b``, ``bytes=a-``, ``bytes=-n``, RFC 9110 §14.1.2) answers 206 with
``Content-Range``; a range that starts past the end answers 416. A Range header that is not
one well-formed byte range, or an ``If-Range`` naming another tag, is ignored (the whole
content, 200), as RFC 9110 §14.2 allows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["ByteRange", "RangeNotSatisfiable", "etag_of", "matches_etag", "requested_range"]

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


@dataclass(frozen=True)
class ByteRange:
    """Bytes ``[start, stop)`` of a ``size``-byte representation."""

    start: int
    stop: int
    size: int

    @property
    def content_range(self) -> str:
        return f"bytes {self.start}-{self.stop - 1}/{self.size}"


class RangeNotSatisfiable(Exception):  # noqa: N818 - named after the status it answers
    """A well-formed byte range that no byte of the representation falls in."""

    def __init__(self, header: str, size: int) -> None:
        super().__init__(f"range {header!r} is outside the content's {size} bytes")
        self.size = size


def etag_of(atom_id_hex: str) -> str:
    return f'"{atom_id_hex}"'


def matches_etag(if_none_match: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` list names ``etag`` (weak comparison, or ``*``)."""
    if if_none_match is None:
        return False
    tags = [tag.strip() for tag in if_none_match.split(",")]
    return "*" in tags or any(tag.removeprefix("W/") == etag for tag in tags)


def requested_range(
    header: str | None, if_range: str | None, etag: str, size: int
) -> ByteRange | None:
    """The one byte range to send, or None for the whole content.

    Raises ``RangeNotSatisfiable`` for a range wholly past the end (or a zero suffix).
    """
    if header is None or (if_range is not None and if_range.strip() != etag):
        return None
    match = _RANGE.fullmatch(header.strip().replace(" ", ""))
    if match is None:
        return None
    first, last = match.groups()
    if not first:
        if not last:
            return None
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(header, size)
        return ByteRange(max(size - suffix, 0), size, size)
    start = int(first)
    if last and int(last) < start:
        return None  # an invalid range-spec: the header is ignored
    if start >= size:
        raise RangeNotSatisfiable(header, size)
    stop = size if not last else min(int(last) + 1, size)
    return ByteRange(start, stop, size)
