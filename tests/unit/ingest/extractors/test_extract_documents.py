"""PDF pages and DOCX paragraphs from files written by real writers (fpdf2, python-docx)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import docx
import pytest
from fpdf import FPDF

from hartonomous.ingest.extractors import ExtractionError, extract


def _pdf(path: Path, pages: list[str]) -> bytes:
    document = FPDF()
    document.set_title("Quarterly atoms")
    document.set_author("Ada")
    for text in pages:
        document.add_page()
        if text:
            document.set_font("Helvetica", size=12)
            document.cell(text=text)
    data = bytes(document.output())
    path.write_bytes(data)
    return data


def test_pdf_text_per_page(tmp_path: Path) -> None:
    path = tmp_path / "report.pdf"
    _pdf(path, ["First page text", "", "Third page text"])

    extraction = extract(path)

    assert (extraction.modality, extraction.subtype) == ("document", "pdf")
    assert [(s.kind, s.text, s.metadata) for s in extraction.segments] == [
        ("page", "First page text", {"page": 1}),
        ("page", "Third page text", {"page": 3}),
    ]
    assert extraction.metadata["page_count"] == 3
    assert extraction.metadata["pages_without_text"] == 1
    assert extraction.metadata["title"] == "Quarterly atoms"
    assert extraction.metadata["author"] == "Ada"


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_pdf_fails(tmp_path: Path, keep: float) -> None:
    data = _pdf(tmp_path / "whole.pdf", ["some text", "more text"])
    truncated = tmp_path / "truncated.pdf"
    truncated.write_bytes(data[: int(len(data) * keep)])

    with pytest.raises(ExtractionError, match="corrupt PDF"):
        extract(truncated)


def test_pdf_extension_on_garbage_fails_as_pdf(tmp_path: Path) -> None:
    path = tmp_path / "fake.pdf"
    path.write_bytes(b"this was never a PDF\n")

    with pytest.raises(ExtractionError, match="corrupt PDF"):
        extract(path)


def test_docx_paragraphs_headings_and_table_cells(tmp_path: Path) -> None:
    document = docx.Document()
    document.add_heading("Atlas of atoms", level=0)
    document.add_heading("Introduction", level=1)
    document.add_paragraph("Every file becomes atoms.")
    document.add_paragraph("   ")
    table = document.add_table(rows=2, cols=3)
    table.cell(0, 0).text = "key"
    table.cell(0, 1).merge(table.cell(0, 2)).text = "merged value"
    table.cell(1, 0).text = "a"
    table.cell(1, 2).text = "c"
    document.add_heading("Details", level=2)
    document.core_properties.author = "Grace"
    path = tmp_path / "atlas.docx"
    document.save(str(path))

    extraction = extract(path)

    assert (extraction.modality, extraction.subtype) == ("document", "docx")
    assert [(s.kind, s.text, dict(s.metadata)) for s in extraction.segments] == [
        ("title", "Atlas of atoms", {}),
        ("heading", "Introduction", {"level": 1}),
        ("paragraph", "Every file becomes atoms.", {}),
        ("cell", "key", {"table": 0, "row": 0, "column": 0}),
        ("cell", "merged value", {"table": 0, "row": 0, "column": 1}),
        ("cell", "a", {"table": 0, "row": 1, "column": 0}),
        ("cell", "c", {"table": 0, "row": 1, "column": 2}),
        ("heading", "Details", {"level": 2}),
    ]
    assert extraction.metadata["table_count"] == 1
    assert extraction.metadata["author"] == "Grace"
    assert extraction.metadata["headings"] == [
        {"level": 1, "text": "Introduction"},
        {"level": 2, "text": "Details"},
    ]


def test_truncated_docx_fails(tmp_path: Path) -> None:
    document = docx.Document()
    document.add_paragraph("soon to be cut short")
    whole = tmp_path / "whole.docx"
    document.save(str(whole))
    truncated = tmp_path / "truncated.docx"
    truncated.write_bytes(whole.read_bytes()[:2000])

    with pytest.raises(ExtractionError, match="corrupt DOCX"):
        extract(truncated)


def test_zip_that_is_not_a_document_is_opaque(tmp_path: Path) -> None:
    path = tmp_path / "bundle.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")

    extraction = extract(path)

    assert (extraction.modality, extraction.subtype) == ("binary", "zip")
