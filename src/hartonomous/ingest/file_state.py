"""Noticing a file that changes while it is read.

A file's state is its identity (device, inode), size, modification time and status-change time
(nanoseconds). The state is taken before the file is first read and again after its bytes are
stored; any difference, or a count of bytes read that is not the size, means the stored bytes
may be of no single version of the file: the file fails with "changed while being read" and its
transaction rolls back. `ctime` cannot be set by a writer (unlike `mtime`), so a same-size
rewrite that restores the old `mtime` is still seen. A change within the file system's timestamp
granularity of the previous one, keeping size and inode, is the one case this cannot see.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


class FileChangedError(Exception):
    """The file changed while it was being read; nothing of it is kept."""


@dataclass(frozen=True)
class FileState:
    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int


def file_state(path: Path) -> FileState:
    """The file's state now (following symbolic links). Raises ``OSError``."""
    status = os.stat(path)
    return FileState(
        status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns
    )


def check_unchanged(path: Path, before: FileState, bytes_read: int) -> None:
    """Raise ``FileChangedError`` unless `bytes_read` bytes were the whole, unchanged file."""
    try:
        after = file_state(path)
    except OSError as exc:
        raise FileChangedError(
            f"changed while being read (now {exc.strerror or 'unreadable'})"
        ) from exc
    if after != before or bytes_read != before.size:
        raise FileChangedError(
            f"changed while being read ({before.size} bytes when reading began, "
            f"{bytes_read} read, {after.size} now)"
        )
