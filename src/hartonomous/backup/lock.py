"""Locks on a backup directory (docs/operations.md, "Backups"), each a `flock`:

- one backup or retention at a time: an exclusive lock on the directory itself. A retention
  run beside a running incremental backup could remove the full backup the incremental is
  being built on: both take this lock, so the second is refused at once;
- readers against retention: a restore (and `backup verify`) holds a SHARED lock on
  ``base/`` while it reads backups and archived WAL; retention takes it exclusively before it
  removes anything, so it never removes a backup or WAL segment a restore has checked and is
  about to replay. Readers do not exclude each other, nor a backup being taken.

A refusal names the holder's pid (read from /proc/locks). No file is written for them, and the
kernel drops a lock when its process ends, so a killed backup or restore leaves none behind.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from hartonomous.db.embedded import make_server_dir
from hartonomous.errors import ConflictError

_PROC_LOCKS = Path("/proc/locks")


class BackupRunningError(ConflictError):
    """Another backup or retention run holds the backup directory's lock."""

    code = "backup-running"


class BackupDirectoryInUseError(ConflictError):
    """Retention was asked for while a restore or verification reads the backup directory,
    or a restore while retention removes from it."""

    code = "backup-directory-in-use"


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


def reading_lock(directory: Path) -> AbstractContextManager[None]:
    """Hold a shared lock on ``directory``/base for the ``with`` block: retention
    (``retention_lock``) cannot remove backups or archived WAL meanwhile. Nothing is locked
    when ``base`` does not exist (no backup to read). Raises ``BackupDirectoryInUseError`` at
    once, naming the pid, while a retention run removes from the directory."""
    return _base_lock(
        directory,
        fcntl.LOCK_SH,
        "retention is removing old backups from {directory} (pid {pids}): wait for it to end, "
        "then run this again",
    )


def retention_lock(directory: Path) -> AbstractContextManager[None]:
    """Hold ``directory``/base exclusively for the ``with`` block (retention removes from it).
    Raises ``BackupDirectoryInUseError`` at once, naming the pid(s), while a restore or a
    verification reads the directory (``reading_lock``)."""
    return _base_lock(
        directory,
        fcntl.LOCK_EX,
        "a restore or verification (pid {pids}) is reading {directory}: retention removes "
        "nothing while it runs",
    )


@contextmanager
def _base_lock(directory: Path, mode: int, refusal: str) -> Iterator[None]:
    """Hold ``mode`` on ``directory``/base (nothing when it does not exist); raise
    ``BackupDirectoryInUseError`` with ``refusal`` (``{directory}``, ``{pids}``) when taken."""
    try:
        handle = os.open(directory / "base", os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        yield
        return
    try:
        try:
            fcntl.flock(handle, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackupDirectoryInUseError(
                refusal.format(directory=directory, pids=_holder(handle))
            ) from None
        yield
    finally:
        os.close(handle)


def _holder(handle: int) -> str:
    """The pid(s) holding a flock on ``handle``'s file, from /proc/locks (`unknown` if unseen;
    several readers: comma-separated)."""
    facts = os.fstat(handle)
    inode = f"{os.major(facts.st_dev):02x}:{os.minor(facts.st_dev):02x}:{facts.st_ino}"
    try:
        lines = _PROC_LOCKS.read_text().splitlines()
    except OSError:
        return "unknown"
    pids: list[str] = []
    for line in lines:
        # `1: FLOCK  ADVISORY  WRITE 12345 08:01:1234567 0 EOF` (waiters start with `->`).
        fields = line.split()
        held = len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == inode
        if held and fields[4] not in pids:
            pids.append(fields[4])
    return ", ".join(pids) or "unknown"
