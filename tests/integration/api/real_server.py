"""The API in a server process of its own (app_server.py) on the test's database, its merged
stdout and stderr read line by line as they come: for tests of what a real socket or a
long-lived response does, and of what the server logs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import clean_environment

from .data_api_support import HANG_GUARD_SECONDS

SERVER = Path(__file__).with_name("app_server.py")


class ServerOutput:
    """The server's merged stdout and stderr, line by line, as they come."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()

    def wait_for(self, text: str, count: int) -> None:
        with self._changed:
            found = self._changed.wait_for(
                lambda: sum(text in line for line in self.lines) >= count, HANG_GUARD_SECONDS
            )
        assert found, "".join(self.lines)


@contextmanager
def real_server(database_url: str, tmp_path: Path) -> Iterator[tuple[str, Path, ServerOutput]]:
    """(base URL, data dir, output) of a server on the test's database, stopped after it."""
    env = clean_environment()
    env["HARTONOMOUS_DATABASE__URL"] = database_url
    env["HARTONOMOUS_DATA_DIR"] = str(tmp_path / "data")
    process = subprocess.Popen(
        [sys.executable, str(SERVER)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line, "the API server exited before listening"
    output = ServerOutput(process)
    try:
        yield json.loads(line)["url"], tmp_path / "data", output
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
