"""Choosing the extractor, and the files that cannot be read at all."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest
from PIL import Image

from hartonomous.ingest.extractors import ExtractionError, dispatch, extract


def test_zero_byte_file_fails(tmp_path: Path) -> None:
    path = tmp_path / "empty.txt"
    path.touch()

    with pytest.raises(ExtractionError, match=r"empty file \(0 bytes\)"):
        extract(path)


def test_directory_fails(tmp_path: Path) -> None:
    with pytest.raises(ExtractionError, match="not a regular file: it is a directory"):
        extract(tmp_path)


def test_named_pipe_fails_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "pipe"
    os.mkfifo(path)

    with pytest.raises(ExtractionError, match="not a regular file: it is a named pipe"):
        extract(path)


def test_missing_file_fails(tmp_path: Path) -> None:
    with pytest.raises(ExtractionError, match="cannot read file: No such file or directory"):
        extract(tmp_path / "absent.txt")


def test_dangling_symlink_fails(tmp_path: Path) -> None:
    link = tmp_path / "link.txt"
    link.symlink_to(tmp_path / "gone.txt")

    with pytest.raises(ExtractionError, match="cannot read file: No such file or directory"):
        extract(link)


def test_path_through_a_file_fails(tmp_path: Path) -> None:
    parent = tmp_path / "plain.txt"
    parent.write_text("I am not a directory\n")

    with pytest.raises(ExtractionError, match="cannot read file: Not a directory"):
        extract(parent / "child.txt")


def test_magic_bytes_win_over_the_extension(tmp_path: Path) -> None:
    path = tmp_path / "actually-an-image.txt"
    Image.new("L", (3, 2)).save(path, format="PNG")

    extraction = extract(path)

    assert (extraction.modality, extraction.subtype) == ("image", "png")


def test_recognised_container_without_an_extractor_is_named(tmp_path: Path) -> None:
    path = tmp_path / "archive.bin"
    path.write_bytes(gzip.compress(b"payload"))

    extraction = extract(path)

    assert (extraction.modality, extraction.subtype) == ("binary", "gzip")
    assert extraction.metadata == {"size_bytes": path.stat().st_size}


def test_unknown_bytes_are_an_opaque_binary(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    data = bytes(range(256)) * 4
    path.write_bytes(data)

    extraction = extract(path)

    assert (extraction.modality, extraction.subtype) == ("binary", "octet-stream")
    assert extraction.metadata == {"size_bytes": len(data)}
    assert (extraction.segments, extraction.derived) == ((), ())


def test_text_over_the_size_limit_is_kept_opaque(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dispatch, "MAX_TEXT_BYTES", 16)
    path = tmp_path / "long.txt"
    path.write_text("a line of text that is longer than sixteen bytes\n")

    extraction = extract(path)

    assert (extraction.modality, extraction.subtype) == ("binary", "octet-stream")
    assert "not examined as text" in str(extraction.metadata["note"])


def test_whitespace_only_file_is_one_segment(tmp_path: Path) -> None:
    path = tmp_path / "blank.txt"
    path.write_bytes(b"\n \n\t\n")

    extraction = extract(path)

    assert [(segment.text, segment.span) for segment in extraction.segments] == [
        ("\n \n\t\n", (0, 5))
    ]
