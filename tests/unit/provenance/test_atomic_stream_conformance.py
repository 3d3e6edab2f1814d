"""AtomicStream version 1 against bytes built by hand from the layout (docs/provenance.md).

Nothing here calls the codec to make the expected bytes: integers are ``struct.pack``-ed
little-endian, string lengths are written as 7-bit varints by hand, the GUID's bytes are ordered
by hand from its text (first three groups reversed, as .NET's ``Guid.ToByteArray``), and tick
counts are computed from the calendar (days since 0001-01-01 x 864,000,000,000 ticks a day).
"""

from __future__ import annotations

import struct
import uuid
from datetime import UTC, datetime

from hartonomous.provenance import AtomicStream, Segment, SegmentKind

GUID_TEXT = "6f9619ff-8b86-d011-b42d-00c04fc964ff"
# 6f9619ff -> ff 19 96 6f, 8b86 -> 86 8b, d011 -> 11 d0, then b42d 00c04fc964ff as written.
GUID_BYTES = bytes.fromhex("ff19966f868b11d0b42d00c04fc964ff")

TICKS_PER_SECOND = 10_000_000
TICKS_PER_DAY = 86_400 * TICKS_PER_SECOND
# 2023 whole years before 2024-01-01: 2023*365 days plus the leap days among them
# (2023//4 - 2023//100 + 2023//400 = 505 - 20 + 5 = 490) = 738,885 days.
DAYS_TO_2024 = 2023 * 365 + 490
TICKS_2024 = DAYS_TO_2024 * TICKS_PER_DAY
# 2024-01-01T12:34:56.789012Z and 2024-01-01T12:34:57Z
CREATED_TICKS = TICKS_2024 + (12 * 3600 + 34 * 60 + 56) * TICKS_PER_SECOND + 7_890_120
INPUT_TICKS = TICKS_2024 + (12 * 3600 + 34 * 60 + 57) * TICKS_PER_SECOND

SCOPE = "text_generation"  # 15 bytes
STREAM_METADATA = '{"notes":"' + "é" * 94 + '"}'  # 200 bytes of UTF-8 from 106 characters
PROMPT = "héllo".encode("utf-16-le")
CONTENT_TYPE = "text/plain; charset=utf-16"  # 26 bytes
SEGMENT_METADATA = '{"prompt_length":5}'  # 19 bytes


def hand_built_bytes() -> bytes:
    return b"".join(
        [
            b"\x00",  # isNull = false
            struct.pack("<i", 1),  # version
            GUID_BYTES,
            struct.pack("<q", CREATED_TICKS),
            b"\x01" + bytes([15]) + b"text_generation",  # scope present
            b"\x00",  # model absent
            b"\x01" + b"\xc8\x01" + STREAM_METADATA.encode(),  # 200 = 0x48 | 0x80, then 0x01
            struct.pack("<i", 2),  # segment count
            # segment 0: Input
            bytes([1]),
            struct.pack("<q", INPUT_TICKS),
            b"\x01" + bytes([26]) + CONTENT_TYPE.encode(),
            b"\x01" + bytes([19]) + SEGMENT_METADATA.encode(),
            struct.pack("<i", len(PROMPT)) + PROMPT,
            # segment 1: Control, an empty content type written as absent, no payload
            bytes([7]),
            struct.pack("<q", TICKS_2024),
            b"\x00",
            b"\x00",
            struct.pack("<i", 0),
        ]
    )


def built_stream() -> AtomicStream:
    return (
        AtomicStream.create(
            uuid.UUID(GUID_TEXT),
            created=datetime(2024, 1, 1, 12, 34, 56, 789012, tzinfo=UTC),
            scope="  text_generation ",
            model="   ",
            metadata=STREAM_METADATA,
        )
        .with_segment(
            "prompt",
            PROMPT,
            timestamp=datetime(2024, 1, 1, 12, 34, 57, tzinfo=UTC),
            content_type=CONTENT_TYPE,
            metadata=SEGMENT_METADATA,
        )
        .with_segment(
            SegmentKind.Control,
            timestamp=datetime(2024, 1, 1, tzinfo=UTC),
            content_type="",
        )
    )


def test_hand_arithmetic_agrees_with_known_anchors() -> None:
    assert len(STREAM_METADATA.encode()) == 200  # so its length takes two varint bytes
    # DateTime(2024, 1, 1).Ticks and the Unix epoch's ticks, as .NET documents them.
    assert TICKS_2024 == 638_396_640_000_000_000
    assert (1969 * 365 + 1969 // 4 - 1969 // 100 + 1969 // 400) * TICKS_PER_DAY == (
        621_355_968_000_000_000
    )


def test_writer_produces_the_hand_built_bytes() -> None:
    assert built_stream().to_bytes() == hand_built_bytes()


def test_reader_decodes_the_hand_built_bytes() -> None:
    stream = AtomicStream.from_bytes(hand_built_bytes())

    assert stream.stream_id == uuid.UUID(GUID_TEXT)
    assert stream.created_ticks == CREATED_TICKS
    assert stream.created == datetime(2024, 1, 1, 12, 34, 56, 789012, tzinfo=UTC)
    assert (stream.scope, stream.model, stream.metadata) == (
        "text_generation",
        None,
        STREAM_METADATA,
    )
    assert stream.segments == (
        Segment(SegmentKind.Input, INPUT_TICKS, CONTENT_TYPE, SEGMENT_METADATA, PROMPT),
        Segment(SegmentKind.Control, TICKS_2024, None, None, b""),
    )
    assert stream.segments[0].timestamp == datetime(2024, 1, 1, 12, 34, 57, tzinfo=UTC)
    assert stream == built_stream()


def test_sub_microsecond_ticks_survive_a_round_trip() -> None:
    # .NET keeps 100 ns; Python datetimes keep 1 µs. The ticks are kept exactly, the datetime
    # is derived and rounded down, and the bytes come back unchanged.
    odd_ticks = CREATED_TICKS + 7  # 0.7 µs past the microsecond
    data = bytearray(hand_built_bytes())
    data[21:29] = struct.pack("<q", odd_ticks)

    stream = AtomicStream.from_bytes(data)

    assert stream.created_ticks == odd_ticks
    assert stream.created == datetime(2024, 1, 1, 12, 34, 56, 789012, tzinfo=UTC)
    assert stream.to_bytes() == bytes(data)


def test_an_empty_stream_is_the_header_and_a_zero_count() -> None:
    stream = AtomicStream.create(uuid.UUID(GUID_TEXT), created=datetime(2024, 1, 1, tzinfo=UTC))
    expected = (
        b"\x00" + struct.pack("<i", 1) + GUID_BYTES + struct.pack("<q", TICKS_2024)
        + b"\x00\x00\x00" + struct.pack("<i", 0)
    )  # fmt: skip
    assert stream.to_bytes() == expected
    assert AtomicStream.from_bytes(expected) == stream
