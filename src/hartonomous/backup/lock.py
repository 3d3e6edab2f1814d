"""One backup or retention at a time per backup directory: an exclusive `flock` on
`<directory>/backup.lock`, which holds the holder's pid (docs/operations.md, "Backups").

A retention run beside a running incremental backup could remove the full backup the
incremental is being built on: both take this lock, so one waits for nobody and the other is
refused with the running one's pid. The kernel drops the lock when its process ends, so a killed
backup leaves no stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hartonomous.db.embedded import make_server_dir
from hartonomous.errors import ConflictError

LOCK_FILE = "backup.lock"


class BackupRunningError(ConflictError):
    """Another backup or retention run holds the backup directory's lock."""

    code = "backup-running"


@contextmanager
def backup_lock(directory: Path) -> Iterator[None]:
    """Hold ``directory``'s backup lock (creating the directory) for the ``with`` block.

    Raises ``BackupRunningError`` at once, naming the holder's pid, when another process
    holds it (never waits: an operator re-runs the command when the other one has ended)."""
    make_server_dir(directory)
    path = directory / LOCK_FILE
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise BackupRunningError(
                f"another backup is running (pid {holder}) on {directory}: wait for it to "
                "end, then run this again"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)
