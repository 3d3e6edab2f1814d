"""A decoded segment shows its payload as text only when its content type says it is text and
the bytes decode in that charset; anything else is Base64 (docs/provenance.md)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from hartonomous.inference.stream_view import decode_segment
from hartonomous.provenance import Segment, SegmentKind

TICKS = 639_316_368_000_000_000


def shown(content_type: str | None, payload: bytes) -> tuple[str, str]:
    segment = decode_segment(0, Segment(SegmentKind.Output, TICKS, content_type, None, payload))
    assert segment.payload_size == len(payload)
    assert segment.timestamp == datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    return segment.encoding, segment.payload


@pytest.mark.parametrize(
    ("content_type", "payload", "text"),
    [
        ("text/plain", "héllo".encode(), "héllo"),
        ("application/json", b'{"y":1}', '{"y":1}'),
        ("application/problem+json", b"{}", "{}"),
        ("text/plain; charset=utf-16", "hi".encode("utf-16-le"), "hi"),
        ('application/octet-stream; charset="latin-1"', b"\xe9", "é"),
    ],
)
def test_text_payloads_are_text(content_type: str, payload: bytes, text: str) -> None:
    assert shown(content_type, payload) == ("text", text)


@pytest.mark.parametrize(
    ("content_type", "payload"),
    [
        (None, b"plain"),
        ("application/octet-stream", b"\x00\x01"),
        ("text/plain", b"\xff\xfe\xfa"),  # not UTF-8
        ("text/plain; charset=no-such-charset", b"abc"),
        # A codec that is not a text encoding is never applied to the bytes.
        ("text/plain; charset=zlib", b"x\x9c\x03\x00\x00\x00\x00\x01"),
        ("text/plain; charset=base64", b"aGk="),
    ],
)
def test_anything_else_is_base64(content_type: str | None, payload: bytes) -> None:
    encoding, text = shown(content_type, payload)
    assert encoding == "base64"
    assert base64.b64decode(text) == payload
