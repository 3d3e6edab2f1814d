"""Uploaded files spooled to disk, under ``<data_dir>/uploads/<upload id>/``, until ingested.

An upload is one folder: one numbered sub-folder per file (``000000/<name>`` …, so two files of
one upload may share a name) and nothing else. The process that owns the folder holds an
exclusive ``flock`` on it for the folder's whole life; ``remove_stale_uploads`` (run when the
API starts) deletes only the folders whose lock it can take, that is those left by a process
that died mid-upload or mid-ingest, never those of another live process (a `serve` beside `up`
on the same data directory). See docs/ingest.md, "Uploads".
"""

from __future__ import annotations

import fcntl
import os
import shutil
import unicodedata
import uuid
from pathlib import Path

import structlog

from hartonomous.errors import UsageError

__all__ = [
    "InvalidUploadNameError",
    "UploadSpool",
    "check_upload_name",
    "remove_stale_uploads",
    "uploads_root",
]

log = structlog.get_logger(__name__)

_NAME_BYTES = 255  # NAME_MAX of Linux file systems


class InvalidUploadNameError(UsageError):
    """An uploaded file's name that cannot be a file name: empty, ``.``/``..``, ``/``, NUL or
    another control character."""

    code = "invalid-file-name"

    def __init__(self, message: str, name: str | None) -> None:
        super().__init__(message)
        self.name = name  # as given; None or "" when the part had none (an input left empty)


def uploads_root(data_dir: Path) -> Path:
    """The folder holding every upload in progress."""
    return data_dir / "uploads"


def check_upload_name(name: str | None) -> str:
    """``name`` when it can name one file; ``InvalidUploadNameError`` naming it otherwise.

    Refused: no or an empty name, ``.`` and ``..``, a name holding ``..``, ``/``, ``\\`` or NUL
    (a path, not a name), one holding another control character (Unicode category Cc: an
    escape sequence would reach every terminal that lists the holding) or an invisible
    formatting character (category Cf: a bidirectional override, a zero-width space), and one
    longer than 255 bytes in UTF-8.
    """
    if not name:
        raise InvalidUploadNameError("an uploaded file has an empty file name", name)
    shown = repr(name)
    if "\x00" in name:
        raise InvalidUploadNameError(f"file name {shown} holds a NUL character", name)
    if any(unicodedata.category(character) == "Cc" for character in name):
        raise InvalidUploadNameError(f"file name {shown} holds a control character", name)
    formatting = next((c for c in name if unicodedata.category(c) == "Cf"), None)
    if formatting is not None:
        # Bidirectional overrides and zero-width characters show a name other than the one
        # stored (`invoice\u202etxt.exe` reads as `invoiceexe.txt`): the Trojan-Source kind.
        raise InvalidUploadNameError(
            f"file name {shown} holds an invisible formatting character (U+{ord(formatting):04X})",
            name,
        )
    if "/" in name or "\\" in name:
        raise InvalidUploadNameError(f"file name {shown} holds a path separator", name)
    if ".." in name or name == ".":
        raise InvalidUploadNameError(f"file name {shown} holds '..' or is '.'", name)
    if len(name.encode("utf-8", "surrogateescape")) > _NAME_BYTES:
        raise InvalidUploadNameError(
            f"file name {name[:40]!r}… is longer than {_NAME_BYTES} bytes", name
        )
    return name


class UploadSpool:
    """One upload's folder, locked by this process until ``remove`` (idempotent).

    ``files`` lists ``(given name, spooled path)`` in arrival order.
    """

    def __init__(self, data_dir: Path) -> None:
        root = uploads_root(data_dir)
        root.mkdir(parents=True, exist_ok=True)
        while True:
            self.directory = root / uuid.uuid4().hex
            self.directory.mkdir(mode=0o700)
            self._lock: int | None = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
            fcntl.flock(self._lock, fcntl.LOCK_EX)
            # A cleaner may have taken the lock between mkdir and flock, and removed the folder.
            if os.fstat(self._lock).st_nlink > 0:
                break
            os.close(self._lock)
        self.files: list[tuple[str, Path]] = []

    def new_file(self, name: str | None) -> Path:
        """The path to spool the next file to (its name checked by ``check_upload_name``)."""
        checked = check_upload_name(name)
        folder = self.directory / f"{len(self.files):06d}"
        folder.mkdir()
        path = folder / checked
        self.files.append((checked, path))
        return path

    def remove(self) -> None:
        """Delete the folder and everything in it, then release the lock."""
        shutil.rmtree(self.directory, ignore_errors=True)
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None


def remove_stale_uploads(data_dir: Path) -> list[Path]:
    """Delete the upload folders no live process holds; the folders removed."""
    root = uploads_root(data_dir)
    if not root.is_dir():
        return []
    removed: list[Path] = []
    for folder in sorted(root.iterdir()):
        try:
            lock = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            continue  # not a folder, or gone already
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock)
            continue  # a live upload of this or another process
        try:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        finally:
            os.close(lock)
    if removed:
        log.info("stale uploads removed", folders=[folder.name for folder in removed])
    return removed
