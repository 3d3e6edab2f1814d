"""A client that disconnects mid-body, on a real server and a real socket: one info line
(`client_disconnected`), no server error logged, nothing left in the upload spool."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from tests.conftest import clean_environment

from hartonomous.ingest.uploads import uploads_root
from hartonomous.security.roles import Role

from .conftest import IssueKey
from .data_api_support import HANG_GUARD_SECONDS

SERVER = Path(__file__).with_name("app_server.py")


def _part(field: str, filename: str) -> bytes:
    return (
        f'--XyZ\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n\r\n'
    ).encode() + b"x" * 1000


MULTIPART = "multipart/form-data; boundary=XyZ"
# Each route that reads a body as it arrives, with the first part of one.
CUT_SHORT = [
    ("/v1/ingest", MULTIPART, _part("files", "a.txt")),
    ("/v1/search/by-example", MULTIPART, _part("file", "a.png")),
    ("/v1/inference/upload", MULTIPART, _part("files", "x.npy")),
    ("/v1/usage-events", "application/cloudevents+json", b'{"id": "aaaa'),
    ("/v1/search", "application/json", b'{"query": "aaaa'),
]


class _Output:
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


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[tuple[str, Path, _Output]]:
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
    output = _Output(process)
    try:
        yield json.loads(line)["url"], tmp_path / "data", output
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def test_a_client_gone_mid_body_is_one_info_line_and_leaves_no_spool(
    server: tuple[str, Path, _Output], issue_key: IssueKey
) -> None:
    url, data_dir, output = server
    token = issue_key(role=Role.USER)
    address = urlsplit(url)
    for done, (path, content_type, first) in enumerate(CUT_SHORT, start=1):
        with socket.create_connection((address.hostname, address.port)) as sock:
            sock.sendall(
                f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: 1000000\r\n\r\n".encode()
                + first
            )
        output.wait_for("client_disconnected", done)
    assert list(uploads_root(data_dir).glob("*")) == []
    log = "".join(output.lines)
    for path, _, _ in CUT_SHORT:
        assert f"'{path}'" in log or f'"{path}"' in log or f"path={path}" in log, log
    for error in ("unhandled_error", "Exception in ASGI application", "Traceback", "[error"):
        assert error not in log, log
