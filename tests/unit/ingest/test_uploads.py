"""Upload spools: file names checked, folders locked, stale ones removed (ingest/uploads.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hartonomous.ingest.uploads import (
    InvalidUploadNameError,
    UploadSpool,
    check_upload_name,
    remove_stale_uploads,
)


@pytest.mark.parametrize(
    "name", ["report.pdf", "a.b.c", ".hidden", "naïve ünïcode.txt", "x" * 255, "two words.txt"]
)
def test_a_plain_file_name_passes(name: str) -> None:
    assert check_upload_name(name) == name


@pytest.mark.parametrize(
    ("name", "says"),
    [
        (None, "empty"),
        ("", "empty"),
        (".", "'..' or is '.'"),
        ("..", "'..' or is '.'"),
        ("a..b", "'..' or is '.'"),
        ("../x", "path separator"),
        ("a/b", "path separator"),
        ("a\\b", "path separator"),
        ("nul\x00", "NUL"),
        ("a\x1b[31mred.txt", "control character"),  # a terminal escape in `holdings list`
        ("tab\tname", "control character"),
        ("line\nbreak", "control character"),
        ("é" * 128, "longer than 255 bytes"),
        ("é" * 128, "'… is longer"),  # the quote shown is closed
        ("invoice\u202etxt.exe", "invisible formatting character (U+202E)"),
        ("zero\u200bwidth.txt", "invisible formatting character (U+200B)"),
    ],
)
def test_a_name_that_is_not_one_file_is_refused_naming_why(name: str | None, says: str) -> None:
    with pytest.raises(InvalidUploadNameError) as raised:
        check_upload_name(name)
    assert says in str(raised.value)
    assert raised.value.http_status == 400


def test_a_spool_numbers_its_files_and_removes_everything(tmp_path: Path) -> None:
    spool = UploadSpool(tmp_path)
    first, second = spool.new_file("same.txt"), spool.new_file("same.txt")
    assert first != second
    assert [name for name, _ in spool.files] == ["same.txt", "same.txt"]
    first.write_bytes(b"1")
    with pytest.raises(InvalidUploadNameError):
        spool.new_file("../escape")
    assert len(spool.files) == 2
    spool.remove()
    spool.remove()  # idempotent
    assert list((tmp_path / "uploads").iterdir()) == []


def test_only_unlocked_spools_are_stale(tmp_path: Path) -> None:
    live, dead = UploadSpool(tmp_path), UploadSpool(tmp_path)
    assert dead._lock is not None
    os.close(dead._lock)  # as if its process had died
    dead._lock = None
    assert remove_stale_uploads(tmp_path) == [dead.directory]
    assert live.directory.is_dir()
    live.remove()
    assert remove_stale_uploads(tmp_path / "nothing-here") == []
