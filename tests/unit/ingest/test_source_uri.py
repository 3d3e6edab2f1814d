"""A holding's source URI is the file's resolved path, whatever links lead to it."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from hartonomous.ingest.file_store import Holder


def test_source_uri_is_the_resolved_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "a.txt").write_text("a")
    (real / "b.txt").write_text("b")
    (tmp_path / "linked").symlink_to(real)  # a folder reached through a link
    (real / "alias.txt").symlink_to(real / "b.txt")  # a file that is a link
    monkeypatch.chdir(tmp_path)
    holder = Holder("tenant", uuid.uuid4(), "file", "private")
    paths = [
        real / "a.txt",
        tmp_path / "linked" / "a.txt",
        tmp_path / "linked" / "b.txt",
        real / "alias.txt",
        tmp_path / "linked" / "alias.txt",
        Path("linked/a.txt"),  # relative
        real / ".." / "real" / "a.txt",
        tmp_path / "linked" / "missing.txt",  # resolves without existing, as resolve() does
    ]
    # Twice: the second time the folders come from the holder's own look-ups.
    for _ in range(2):
        assert [holder.source_uri(path) for path in paths] == [
            path.resolve().as_uri() for path in paths
        ]
    assert holder.source_uri(tmp_path / "linked" / "alias.txt") == (real / "b.txt").as_uri()
