"""One backup or retention at a time per backup directory: an exclusive `flock` on the
directory itself (docs/operations.md, "Backups").

A retention run beside a running incremental backup could remove the full backup the
incremental is being built on: both take this lock, so the second is refused at once, naming
the running one's pid (read from /proc/locks). No file is written for it, and the kernel drops
the lock when its process ends, so a killed backup leaves no stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hartonomous.db.embedded import make_server_dir
from hartonomous.errors import ConflictError

_PROC_LOCKS = Path("/proc/locks")


class BackupRunningError(ConflictError):
    """Another backup or retention run holds the backup directory's lock."""

    code = "backup-running"


@contextmanager
def backup_lock(directory: Path) -> Iterator[None]:
    """Hold ``directory``'s backup lock (creating the directory) for the ``with`` block.

    Raises ``BackupRunningError`` at once, naming the holder's pid, when another process
    holds it (never waits: an operator re-runs the command when the other one has ended)."""
    make_server_dir(directory)
    handle = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackupRunningError(
                f"another backup is running (pid {_holder(handle)}) on {directory}: wait for "
                "it to end, then run this again"
            ) from None
        yield
    finally:
        os.close(handle)  # drops the lock


def _holder(handle: int) -> str:
    """The pid holding a flock on ``handle``'s file, from /proc/locks (`unknown` if unseen)."""
    facts = os.fstat(handle)
    inode = f"{os.major(facts.st_dev):02x}:{os.minor(facts.st_dev):02x}:{facts.st_ino}"
    try:
        lines = _PROC_LOCKS.read_text().splitlines()
    except OSError:
        return "unknown"
    for line in lines:
        # `1: FLOCK  ADVISORY  WRITE 12345 08:01:1234567 0 EOF` (waiters start with `->`).
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == inode:
            return fields[4]
    return "unknown"
