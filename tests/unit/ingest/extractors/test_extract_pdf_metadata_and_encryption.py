"""PDF metadata that does not parse, and encrypted PDFs (written by fpdf2, rewritten by pypdf)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from fpdf import FPDF
from pypdf import PdfReader, PdfWriter

from hartonomous.ingest.extractors import Extraction, ExtractionError, extract

_PAGES = ("Harbour inspection notes", "Second page about cranes")


def _rewritten(
    tmp_path: Path, *, metadata: dict[str, str] | None = None, **encryption: str
) -> Path:
    document = FPDF()
    document.set_font("Helvetica", size=12)
    for text in _PAGES:
        document.add_page()
        document.cell(text=text)
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(bytes(document.output()))))
    if metadata is not None:
        writer.add_metadata(metadata)
    if encryption:
        writer.encrypt(encryption["user"], "owner-secret", algorithm=encryption["algorithm"])
    path = tmp_path / "document.pdf"
    with path.open("wb") as handle:
        writer.write(handle)
    return path


def _assert_pages_read(extraction: Extraction) -> None:
    assert (extraction.modality, extraction.subtype) == ("document", "pdf")
    assert [segment.text.strip() for segment in extraction.segments] == list(_PAGES)


def test_a_creation_date_that_does_not_parse_keeps_the_text(tmp_path: Path) -> None:
    # The example of the issue: the whole PDF was refused with "Can not convert date".
    path = _rewritten(
        tmp_path, metadata={"/CreationDate": "10/2/2024 01:48:09", "/Title": "Inspection"}
    )
    extraction = extract(path)

    _assert_pages_read(extraction)
    assert extraction.metadata["title"] == "Inspection"
    assert "created" not in extraction.metadata
    assert extraction.metadata["unparsed_metadata"] == {"created": "10/2/2024 01:48:09"}


def test_a_bad_modification_date_is_reported_beside_a_good_creation_date(tmp_path: Path) -> None:
    path = _rewritten(
        tmp_path,
        metadata={"/CreationDate": "D:20240210014809+01'00'", "/ModDate": "yesterday"},
    )
    extraction = extract(path)

    _assert_pages_read(extraction)
    assert extraction.metadata["created"] == "2024-02-10T01:48:09+01:00"
    assert extraction.metadata["unparsed_metadata"] == {"modified": "yesterday"}


@pytest.mark.parametrize("algorithm", ["RC4-40", "RC4-128", "AES-128", "AES-256"])
def test_encrypted_with_an_empty_user_password_is_read_whatever_the_algorithm(
    tmp_path: Path, algorithm: str
) -> None:
    extraction = extract(_rewritten(tmp_path, user="", algorithm=algorithm))

    _assert_pages_read(extraction)
    assert extraction.metadata["encrypted"] is True


@pytest.mark.parametrize("algorithm", ["RC4-128", "AES-256"])
def test_a_pdf_that_needs_a_password_fails_saying_so(tmp_path: Path, algorithm: str) -> None:
    path = _rewritten(tmp_path, user="user-secret", algorithm=algorithm)

    with pytest.raises(ExtractionError) as failure:
        extract(path)
    assert str(failure.value) == "encrypted PDF: a password is required"
