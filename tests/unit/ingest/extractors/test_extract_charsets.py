"""Character sets: byte-order marks, declarations in the document, and detection.

Each file is written in the encoding under test; the extraction must give back the original
characters and record which encoding it used and why.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hartonomous.ingest.extractors import Extraction, extract

_JAPANESE = "日本語の文書です。検索できるはずです。"


def _extract(tmp_path: Path, name: str, data: bytes) -> Extraction:
    path = tmp_path / name
    path.write_bytes(data)
    return extract(path)


def _text(extraction: Extraction) -> str:
    return "\n".join(segment.text for segment in extraction.segments)


def test_shift_jis_page_declaring_meta_charset_is_html_with_its_text(tmp_path: Path) -> None:
    # The example of the issue: stored as binary/octet-stream with no text until now.
    page = (
        '<!DOCTYPE html><html lang="ja"><head><meta charset="shift_jis">'
        f"<title>テスト</title></head><body><p>{_JAPANESE}</p><p>丸数字①も</p></body></html>"
    )
    extraction = _extract(tmp_path, "page.html", page.encode("cp932"))

    assert (extraction.modality, extraction.subtype) == ("document", "html")
    assert _JAPANESE in _text(extraction)
    assert "丸数字①も" in _text(extraction)  # a Windows-31J character, as browsers decode it
    assert extraction.metadata["title"] == "テスト"
    assert extraction.metadata["encoding"] == "cp932"
    assert extraction.metadata["encoding_source"] == "declared"
    assert extraction.metadata["declared_encoding"] == "shift_jis"


def test_http_equiv_content_type_names_the_charset(tmp_path: Path) -> None:
    russian = "Съешь же ещё этих мягких французских булок, да выпей чаю."
    page = (
        '<html><head><meta http-equiv="Content-Type" content="text/html; charset=windows-1251">'
        f"</head><body><p>{russian}</p></body></html>"
    )
    extraction = _extract(tmp_path, "ru.htm", page.encode("cp1251"))

    assert extraction.subtype == "html"
    assert _text(extraction) == russian
    assert extraction.metadata["encoding"] == "cp1251"
    assert extraction.metadata["encoding_source"] == "declared"


def test_xml_declaring_iso_8859_1(tmp_path: Path) -> None:
    document = (
        '<?xml version="1.0" encoding="ISO-8859-1"?>\n<menu><dish>crème brûlée</dish></menu>\n'
    )
    extraction = _extract(tmp_path, "menu.xml", document.encode("iso-8859-1"))

    assert extraction.subtype == "xml"
    assert extraction.metadata["valid"] is True
    assert "crème brûlée" in _text(extraction)
    assert extraction.metadata["declared_encoding"] == "ISO-8859-1"
    assert extraction.metadata["encoding_source"] == "declared"


def test_utf16_page_with_a_byte_order_mark_wins_over_its_declaration(tmp_path: Path) -> None:
    page = (
        '<html><head><meta charset="iso-8859-1"></head>'
        "<body><h1>Überschrift</h1><p>Grüße aus Köln</p></body></html>"
    )
    extraction = _extract(tmp_path, "wide.html", page.encode("utf-16"))

    assert extraction.subtype == "html"
    assert [segment.text for segment in extraction.segments] == ["Überschrift", "Grüße aus Köln"]
    assert extraction.metadata["encoding"] == "utf-16"
    assert extraction.metadata["encoding_source"] == "bom"


@pytest.mark.parametrize(
    ("text", "codec", "expected"),
    [
        (
            "Größe und Übermaß: schöne Grüße aus München, sagte der Bäcker.\n",
            "cp1252",
            "cp1252",
        ),
        (
            "Привет, мир! Это проверка определения кодировки для русского текста.\n",
            "koi8-r",
            "koi8-r",
        ),
        ("中文文本的编码检测测试。这是一个比较长的句子。\n", "gbk", "gb18030"),
    ],
)
def test_plain_text_that_is_not_utf8_is_detected(
    tmp_path: Path, text: str, codec: str, expected: str
) -> None:
    extraction = _extract(tmp_path, "legacy.txt", text.encode(codec))

    assert extraction.modality == "text"
    assert _text(extraction) == text
    assert extraction.metadata["encoding"] == expected
    assert extraction.metadata["encoding_source"] == "detected"
    assert "declared_encoding" not in extraction.metadata


def test_a_declaration_that_does_not_decode_falls_back_and_is_still_recorded(
    tmp_path: Path,
) -> None:
    page = "<html><head><meta charset='utf-8'></head><body><p>Größe und Übermaß der Bäcker</p>"
    extraction = _extract(tmp_path, "wrong.html", page.encode("cp1252"))

    assert "Größe und Übermaß der Bäcker" in _text(extraction)
    assert extraction.metadata["encoding"] == "cp1252"
    assert extraction.metadata["encoding_source"] == "detected"
    assert extraction.metadata["declared_encoding"] == "utf-8"


def test_plain_utf8_records_its_source(tmp_path: Path) -> None:
    extraction = _extract(tmp_path, "plain.txt", "naïve café\n".encode())

    assert extraction.metadata["encoding"] == "utf-8"
    assert extraction.metadata["encoding_source"] == "utf-8"


@pytest.mark.parametrize(
    ("declared", "body", "codec", "expected"),
    [
        # A common mistake: the page says ISO-8859-1 but was saved as UTF-8.
        ("iso-8859-1", "Grüße aus Köln", "utf-8", {"encoding_source": "utf-8"}),
        # A Python codec that is no character set: decoding with it would rewrite the text.
        ("unicode_escape", "a\\u0041b", "ascii", {"encoding": "utf-8"}),
    ],
)
def test_a_declaration_does_not_override_what_the_bytes_really_are(
    tmp_path: Path, declared: str, body: str, codec: str, expected: dict[str, str]
) -> None:
    page = f'<html><head><meta charset="{declared}"></head><body><p>{body}</p>'
    extraction = _extract(tmp_path, "page.html", page.encode(codec))

    assert _text(extraction) == body
    assert extraction.metadata["declared_encoding"] == declared
    assert expected.items() <= extraction.metadata.items()


@pytest.mark.parametrize(
    ("codec", "mark"),
    [("utf-8", b"\xef\xbb\xbf"), ("utf-16-le", b"\xff\xfe"), ("utf-32-be", b"\x00\x00\xfe\xff")],
)
def test_a_byte_order_mark_is_an_encoding_signature_not_text(
    tmp_path: Path, codec: str, mark: bytes
) -> None:
    # The example (UTF-8) and the wider marks: none may reach the text (lexical
    # search tokenised the first word as U+FEFF + "zebra").
    body = "Zebra crossings are painted white.\n\nSecond.\n"
    extraction = _extract(tmp_path, f"bom-{codec}.txt", mark + body.encode(codec))

    assert extraction.metadata["bom"] is True
    assert extraction.metadata["encoding_source"] == "bom"
    assert "".join(segment.text for segment in extraction.segments) == body
    assert extraction.segments[0].text.startswith("Zebra")


def test_a_file_that_is_only_a_byte_order_mark_has_no_text(tmp_path: Path) -> None:
    extraction = _extract(tmp_path, "empty.txt", b"\xef\xbb\xbf")

    assert extraction.segments == ()


@pytest.mark.parametrize(
    ("mark", "text", "codec"),
    [
        (b"\xef\xbb\xbf", "Größe und Übermaß der Bäcker; Grüße aus Köln.\n", "cp1252"),
        (b"\xef\xbb\xbf", "Привет, как дела? Это текст в кодировке KOI8-R.\n", "koi8-r"),
    ],
)
def test_a_byte_order_mark_the_bytes_do_not_follow_falls_back_to_detection(
    tmp_path: Path, mark: bytes, text: str, codec: str
) -> None:
    # A UTF-8 mark before Windows-1252 text (an editor's or a concatenation's) was taken at its
    # word: the file did not decode and was stored as opaque bytes, its text never found.
    extraction = _extract(tmp_path, "marked.txt", mark + text.encode(codec))

    assert extraction.modality == "text"
    assert _text(extraction) == text
    assert extraction.metadata["encoding_source"] == "detected"
    assert extraction.metadata["bom"] is True
