"""One `up` per data directory: an advisory lock that dies with its process."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType
from typing import IO

from hartonomous.db.embedded import EmbeddedLayout
from hartonomous.errors import ConflictError


class InstanceBusyError(ConflictError):
    """Another `hartonomous up` already runs on this data directory."""


class InstanceLock:
    def __init__(self, data_dir: Path) -> None:
        # Other commands read the pid in it (``EmbeddedLayout.running_up_pid``): the server
        # is this `up`'s while it runs, and they never start it behind its back.
        self.path = EmbeddedLayout(data_dir).up_lock
        self._handle: IO[str] | None = None

    def __enter__(self) -> InstanceLock:
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise InstanceBusyError(
                f"data dir {self.path.parent} is already in use by another `hartonomous up` "
                f"(pid {holder})"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._handle = handle
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.seek(0)
            self._handle.truncate()
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
