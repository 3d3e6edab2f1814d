"""Plain-text formats: paragraph segments tile the file; structured formats are validated."""

from __future__ import annotations

from pathlib import Path

import pytest

from hartonomous.ingest.extractors import Extraction, extract
from hartonomous.ingest.extractors.text import MAX_SEGMENT_BYTES


def _write(directory: Path, name: str, data: bytes) -> Path:
    path = directory / name
    path.write_bytes(data)
    return path


def _assert_tiles(extraction: Extraction, data: bytes) -> None:
    _assert_tiles_from(extraction, data, 0, 0)


def _assert_tiles_from(extraction: Extraction, data: bytes, first: int, position: int) -> None:
    for segment in extraction.segments[first:]:
        assert segment.span is not None
        start, end = segment.span
        assert start == position
        assert data[start:end] == segment.text.encode("utf-8")
        position = end
    assert position == len(data)


def test_paragraphs_tile_the_file_and_keep_their_separators(tmp_path: Path) -> None:
    data = b"\n\nFirst paragraph\nstill first.\n\n  \nSecond\r\n\r\nThird without newline  "
    extraction = extract(_write(tmp_path, "notes.txt", data))

    assert (extraction.modality, extraction.subtype) == ("text", "plain")
    assert [segment.text for segment in extraction.segments] == [
        "\n\nFirst paragraph\nstill first.\n\n  \n",
        "Second\r\n\r\n",
        "Third without newline  ",
    ]
    assert all(segment.kind == "paragraph" for segment in extraction.segments)
    _assert_tiles(extraction, data)
    assert extraction.metadata["encoding"] == "utf-8"


def test_identical_paragraphs_in_two_documents_are_identical_segments(tmp_path: Path) -> None:
    shared = "A paragraph both documents quote verbatim.\n\n"
    one = extract(_write(tmp_path, "one.txt", f"Intro one.\n\n{shared}End one.\n".encode()))
    two = extract(_write(tmp_path, "two.log", f"{shared}Something else.\n".encode()))

    assert shared in {segment.text for segment in one.segments}
    assert two.segments[0].text == shared
    assert two.subtype == "log"


def test_utf8_bom_is_no_text_but_the_first_span_covers_its_bytes(tmp_path: Path) -> None:
    data = "\ufeffcafé\n\nnaïve ünïcödé 日本語\n".encode()
    extraction = extract(_write(tmp_path, "bom.txt", data))

    assert extraction.metadata["bom"] is True
    assert extraction.metadata["encoding"] == "utf-8"
    assert [segment.text for segment in extraction.segments] == [
        "café\n\n",
        "naïve ünïcödé 日本語\n",
    ]
    assert extraction.segments[0].span == (0, 3 + len("café\n\n".encode()))
    assert data[: extraction.segments[0].span[1]] == b"\xef\xbb\xbf" + "café\n\n".encode()
    position = extraction.segments[0].span[1]
    _assert_tiles_from(extraction, data, 1, position)


def test_oversized_paragraph_is_cut_into_fragments_on_character_boundaries(
    tmp_path: Path,
) -> None:
    line = "ü" * (MAX_SEGMENT_BYTES // 2 + 7)  # one line over the limit, two bytes a character
    data = f"{line}\nshort line\n\nnext\n".encode()
    extraction = extract(_write(tmp_path, "big.txt", data))

    fragments = [segment for segment in extraction.segments if segment.kind == "fragment"]
    assert len(fragments) >= 2
    assert all(len(segment.text.encode()) <= MAX_SEGMENT_BYTES for segment in fragments)
    assert extraction.segments[-1].text == "next\n"
    _assert_tiles(extraction, data)


def test_markdown_headings_outside_code_fences(tmp_path: Path) -> None:
    data = (
        b"# Title\n\nIntro text.\n\n```\n# not a heading\n```\n\n"
        b"Setext heading\n--------------\n\n### Third ###\n"
    )
    extraction = extract(_write(tmp_path, "readme.md", data))

    assert extraction.subtype == "markdown"
    assert extraction.metadata["headings"] == [
        {"level": 1, "text": "Title"},
        {"level": 2, "text": "Setext heading"},
        {"level": 3, "text": "Third"},
    ]
    assert extraction.segments[0].kind == "heading"
    assert extraction.segments[0].metadata == {"level": 1}
    _assert_tiles(extraction, data)


def test_csv_metadata(tmp_path: Path) -> None:
    data = b"name;age;city\nada;36;london\nalan;41;wilmslow\n"
    extraction = extract(_write(tmp_path, "people.csv", data))

    assert extraction.subtype == "csv"
    assert extraction.metadata["valid"] is True
    assert extraction.metadata["delimiter"] == ";"
    assert extraction.metadata["rows"] == 3
    assert extraction.metadata["columns"] == 3
    assert extraction.metadata["header"] == ["name", "age", "city"]


def test_csv_with_an_unterminated_quote_is_still_text_but_invalid(tmp_path: Path) -> None:
    extraction = extract(_write(tmp_path, "bad.csv", b'a,b\n"unterminated,2\n'))

    assert extraction.modality == "text"
    assert extraction.metadata["valid"] is False
    assert extraction.metadata["parse_error"]


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("doc.json", b'{"a": [1, 2, 3]}\n', {"valid": True, "top_level": "object"}),
        ("doc.yaml", b"a: 1\n---\nb: [2, 3]\n", {"valid": True, "documents": 2}),
        ("doc.xml", b'<?xml version="1.0"?>\n<root xmlns="urn:x"><a/></root>\n', {"valid": True}),
    ],
)
def test_valid_structured_text(
    tmp_path: Path, name: str, data: bytes, expected: dict[str, object]
) -> None:
    extraction = extract(_write(tmp_path, name, data))

    assert extraction.modality == "text"
    assert extraction.subtype == name.rsplit(".", 1)[1]
    assert expected.items() <= dict(extraction.metadata).items()
    _assert_tiles(extraction, data)


def test_xml_root_and_namespace(tmp_path: Path) -> None:
    extraction = extract(_write(tmp_path, "feed.xml", b'<feed xmlns="urn:atom"><e/></feed>'))

    assert extraction.metadata["root"] == "feed"
    assert extraction.metadata["namespace"] == "urn:atom"


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("broken.json", b'{"a": [1, 2,\n\n"b": }\n'),
        ("broken.yaml", b"a: [1, 2\nb: {\n"),
        ("broken.xml", b"<root><unclosed></root>\n"),
    ],
)
def test_invalid_structured_text_is_ingested_with_its_parse_error(
    tmp_path: Path, name: str, data: bytes
) -> None:
    extraction = extract(_write(tmp_path, name, data))

    assert extraction.modality == "text"
    assert extraction.metadata["valid"] is False
    assert isinstance(extraction.metadata["parse_error"], str)
    _assert_tiles(extraction, data)


def test_xml_external_entities_are_never_loaded(tmp_path: Path) -> None:
    # The entity's file is not well-formed: resolving it would make the document invalid.
    entity = _write(tmp_path, "entity.txt", b"<unclosed>")
    data = (
        b'<?xml version="1.0"?>\n'
        b"<!DOCTYPE r [<!ENTITY ext SYSTEM '" + entity.as_uri().encode() + b"'>]>\n"
        b"<r>&ext;</r>\n"
    )
    extraction = extract(_write(tmp_path, "xxe.xml", data))

    assert extraction.metadata["valid"] is True
    assert extraction.metadata["root"] == "r"


def test_windows_1252_text_decodes_without_spans(tmp_path: Path) -> None:
    data = (
        "Le gar\u00e7on a mang\u00e9 une cr\u00e8me br\u00fbl\u00e9e \u00e0 No\u00ebl \u2013 "
        "une id\u00e9e na\u00efve.\n\nsecond paragraph\n"
    ).encode("cp1252")
    extraction = extract(_write(tmp_path, "legacy.txt", data))

    assert extraction.metadata["encoding"] == "cp1252"
    assert extraction.metadata["encoding_source"] == "detected"
    assert "".join(segment.text for segment in extraction.segments) == data.decode("cp1252")
    assert all(segment.span is None for segment in extraction.segments)


def test_utf16_text_with_a_byte_order_mark(tmp_path: Path) -> None:
    text = "hello\n\nwörld\n"
    extraction = extract(_write(tmp_path, "wide.txt", text.encode("utf-16")))

    assert extraction.metadata["encoding"] == "utf-16"
    assert extraction.metadata["bom"] is True
    assert "".join(segment.text for segment in extraction.segments) == text


@pytest.mark.parametrize("data", [b"abc\x00def\n", b"text with \x01\x02 controls\n"])
def test_bytes_that_are_not_text_become_binary(tmp_path: Path, data: bytes) -> None:
    extraction = extract(_write(tmp_path, "mystery.txt", data))

    assert (extraction.modality, extraction.subtype) == ("binary", "octet-stream")
    assert extraction.metadata == {"size_bytes": len(data)}
    assert extraction.segments == ()
