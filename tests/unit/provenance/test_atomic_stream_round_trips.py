"""AtomicStream building rules, round trips with every kind and alias, null and text forms."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest

from hartonomous.errors import UsageError
from hartonomous.provenance import (
    NULL_STREAM_BYTES,
    AtomicStream,
    AtomicStreamError,
    SegmentKind,
    format_atomic_stream,
    parse_atomic_stream,
    read_atomic_stream,
    write_atomic_stream,
)

STREAM_ID = uuid.UUID("0b4f2e4c-93a1-4d7e-8a52-5f3c1d2e9b70")
WHEN = datetime(2025, 6, 30, 23, 59, 59, 999999, tzinfo=UTC)
# Offset of segment 0's kind byte in a stream with scope, model and metadata absent.
FIRST_KIND_AT = 1 + 4 + 16 + 8 + 3 + 4

ALIASES = {
    "prompt": SegmentKind.Input,
    "completion": SegmentKind.Output,
    "vector": SegmentKind.Embedding,
    "guard": SegmentKind.Moderation,
    "attachment": SegmentKind.Artifact,
    "metrics": SegmentKind.Telemetry,
}


def empty_stream() -> AtomicStream:
    return AtomicStream.create(STREAM_ID, created=WHEN)


@pytest.mark.parametrize("kind", list(SegmentKind))
def test_every_kind_round_trips_as_its_byte(kind: SegmentKind) -> None:
    stream = empty_stream().with_segment(kind, bytes(range(256)), timestamp=WHEN)
    data = stream.to_bytes()

    assert data[FIRST_KIND_AT] == kind.value
    decoded = AtomicStream.from_bytes(data)
    assert decoded == stream
    assert decoded.segments[0].kind is kind


def test_all_kinds_in_one_stream_keep_their_order() -> None:
    stream = empty_stream()
    for index, kind in enumerate(reversed(SegmentKind)):
        stream = stream.with_segment(
            kind,
            f"payload {index}".encode(),
            timestamp=WHEN - timedelta(seconds=index),
            content_type=f"application/x-{kind.name.lower()}",
            metadata=f'{{"index":{index}}}',
        )
    decoded = AtomicStream.from_bytes(stream.to_bytes())
    assert decoded == stream
    assert [segment.kind for segment in decoded.segments] == list(reversed(SegmentKind))
    assert decoded.segments[3].timestamp == WHEN - timedelta(seconds=3)


@pytest.mark.parametrize(("alias", "kind"), ALIASES.items())
def test_every_alias_round_trips_as_its_kind(alias: str, kind: SegmentKind) -> None:
    stream = empty_stream().with_segment(alias, b"x", timestamp=WHEN)
    assert stream.to_bytes()[FIRST_KIND_AT] == kind.value
    assert AtomicStream.from_bytes(stream.to_bytes()).segments[0].kind is kind


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("input", SegmentKind.Input),
        ("OUTPUT", SegmentKind.Output),
        ("EmBeDdInG", SegmentKind.Embedding),
        (" moderation\t", SegmentKind.Moderation),
        ("Artifact", SegmentKind.Artifact),
        ("telemetry", SegmentKind.Telemetry),
        ("control", SegmentKind.Control),
        ("unknown", SegmentKind.Unknown),
        ("PROMPT", SegmentKind.Input),
        ("\u3000Completion\u2028", SegmentKind.Output),  # .NET trims Unicode spaces too
        ("Metrics", SegmentKind.Telemetry),
    ],
)
def test_names_parse_case_insensitively_after_trimming(name: str, kind: SegmentKind) -> None:
    assert SegmentKind.parse(name) is kind


@pytest.mark.parametrize(
    "name",
    [
        None,
        "",
        "   ",
        "prompts",
        "in put",
        "3",
        "guardrail",
        "vec",
        "metric\u017f",  # long s, which case-folds to "s"
        "İnput",
        "\u0131nput",  # dotless i, which upper-cases to "I"
    ],
)
def test_anything_else_parses_as_unknown(name: str | None) -> None:
    assert SegmentKind.parse(name) is SegmentKind.Unknown


def test_create_trims_scope_and_model_and_keeps_metadata() -> None:
    stream = AtomicStream.create(
        STREAM_ID, created=WHEN, scope="\t text_generation \n", model="", metadata="  {}  "
    )
    assert (stream.scope, stream.model, stream.metadata) == ("text_generation", None, "  {}  ")
    assert AtomicStream.create(STREAM_ID, scope=" \u00a0 ").scope is None
    # U+001F is not whitespace to .NET's Trim (Python's str.strip would remove it).
    assert AtomicStream.create(STREAM_ID, model="\x1fm ").model == "\x1fm"


def test_empty_stream_metadata_is_kept_but_empty_segment_texts_are_absent() -> None:
    stream = AtomicStream.create(STREAM_ID, created=WHEN, metadata="").with_segment(
        "input", b"", timestamp=WHEN, content_type="", metadata=""
    )
    decoded = AtomicStream.from_bytes(stream.to_bytes())
    assert decoded.metadata == ""
    assert (decoded.segments[0].content_type, decoded.segments[0].metadata) == (None, None)


def test_datetimes_convert_to_utc_exactly_and_default_to_now() -> None:
    plus_two = timezone(timedelta(hours=2))
    stream = AtomicStream.create(
        STREAM_ID, created=datetime(2025, 7, 1, 1, 59, 59, 999999, plus_two)
    )
    assert stream.created == WHEN

    before = datetime.now(UTC)
    now_stream = AtomicStream.create(STREAM_ID).with_segment("input")
    after = datetime.now(UTC)
    assert before <= now_stream.created <= after
    assert now_stream.created <= now_stream.segments[0].timestamp <= after
    assert now_stream.segments[0].payload == b""


def test_the_ends_of_the_datetime_range_round_trip() -> None:
    first = datetime.min.replace(tzinfo=UTC)
    last = datetime.max.replace(tzinfo=UTC)
    stream = AtomicStream.create(STREAM_ID, created=first).with_segment("input", timestamp=last)
    assert (stream.created_ticks, stream.segments[0].timestamp_ticks) == (
        0,
        3_155_378_975_999_999_990,
    )
    decoded = AtomicStream.from_bytes(stream.to_bytes())
    assert (decoded.created, decoded.segments[0].timestamp) == (first, last)

    # .NET's last tick (9999-12-31T23:59:59.9999999) is kept, its datetime rounded down.
    data = bytearray(stream.to_bytes())
    data[FIRST_KIND_AT + 1 : FIRST_KIND_AT + 9] = (3_155_378_975_999_999_999).to_bytes(8, "little")
    at_max = AtomicStream.from_bytes(data)
    assert at_max.segments[0].timestamp_ticks == 3_155_378_975_999_999_999
    assert at_max.segments[0].timestamp == last
    assert at_max.to_bytes() == bytes(data)


def test_with_segment_returns_a_new_stream_and_copies_the_payload() -> None:
    payload = bytearray(b"abc")
    stream = empty_stream()
    longer = stream.with_segment("output", payload, timestamp=WHEN)
    payload[0] = ord("z")

    assert stream.segments == ()
    assert longer.segments[0].payload == b"abc"
    assert (longer.stream_id, longer.created_ticks) == (stream.stream_id, stream.created_ticks)


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: AtomicStream.create(uuid.UUID(int=0)), "non-nil UUID"),
        (lambda: AtomicStream.create(STREAM_ID, created=datetime(2025, 1, 1)), "naive datetime"),
        (
            lambda: empty_stream().with_segment("input", timestamp=datetime(2025, 1, 1)),
            "segment timestamp: a naive datetime",
        ),
        (
            lambda: AtomicStream.create(
                STREAM_ID, created=datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=2)))
            ),
            "outside years 1..9999 in UTC",
        ),
        (
            lambda: empty_stream().with_segment(
                "input", timestamp=datetime.max.replace(tzinfo=timezone(timedelta(hours=-1)))
            ),
            "outside years 1..9999 in UTC",
        ),
        (lambda: AtomicStream.create(STREAM_ID, scope="\ud800"), "stream scope cannot be written"),
        (
            lambda: empty_stream().with_segment("input", content_type="a\udfffb"),
            "segment content type cannot be written",
        ),
    ],
)
def test_invalid_arguments_are_refused_clearly(build: Callable[[], object], fragment: str) -> None:
    with pytest.raises(AtomicStreamError, match=fragment) as caught:
        build()
    assert caught.value.offset is None


def test_the_null_form_is_one_byte_and_reads_as_none() -> None:
    assert write_atomic_stream(None) == NULL_STREAM_BYTES == b"\x01"
    assert read_atomic_stream(b"\x01") is None
    with pytest.raises(AtomicStreamError, match="byte 0: expected a stream, got the null value"):
        AtomicStream.from_bytes(b"\x01")


def test_the_text_form_is_base64_of_the_bytes() -> None:
    stream = empty_stream().with_segment("vector", b"\x00\x01\x02", timestamp=WHEN)
    text = stream.to_base64()

    assert text == base64.b64encode(stream.to_bytes()).decode()
    assert AtomicStream.from_base64(text) == stream
    # Whitespace inside the text is ignored, as .NET's Convert.FromBase64String does.
    wrapped = "\n".join(text[i : i + 10] for i in range(0, len(text), 10))
    assert parse_atomic_stream(f"  {wrapped} \r\n") == stream


def test_the_null_text_form() -> None:
    assert format_atomic_stream(None) == "NULL"
    for text in ("NULL", " null ", "Null\u3000", "", "  \n"):
        assert parse_atomic_stream(text) is None
    with pytest.raises(AtomicStreamError, match="got the null value"):
        AtomicStream.from_base64("NULL")


@pytest.mark.parametrize("text", ["not base64!", "AAEAAA", "AAEA*AAA", "ÄAAA", "AAEA\u3000AAAA"])
def test_text_that_is_not_base64_is_refused(text: str) -> None:
    with pytest.raises(AtomicStreamError, match="not Base64") as caught:
        parse_atomic_stream(text)
    assert isinstance(caught.value, UsageError)
