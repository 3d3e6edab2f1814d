"""SIGTERM while an upload is still arriving: a 503 problem the client can retry, not a
plain-text 500 at the graceful-shutdown timeout, and nothing left in the spool."""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

from tests.conftest import clean_environment
from tests.integration.test_serve import _issue_key
from tests.integration.test_up import RunningUp

from hartonomous.db import EmbeddedPostgres
from hartonomous.ingest.uploads import uploads_root

BOUNDARY = "graceful-shutdown-boundary"


def _spooled(data_dir: Path) -> list[Path]:
    root = uploads_root(data_dir)
    return sorted(path for path in root.rglob("*") if path.is_file()) if root.exists() else []


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        assert piece, f"connection closed before a response: {data!r}"
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.strip().lower(): value.strip()
        for name, value in (line.split(":", 1) for line in header_lines)
    }
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        piece = sock.recv(65536)
        if not piece:
            break
        body += piece
    return int(status_line.split()[1]), headers, body


def test_sigterm_during_a_slow_upload_answers_503_and_removes_the_spool(data_dir: Path) -> None:
    env = clean_environment() | {"HARTONOMOUS_DATA_DIR": str(data_dir)}
    up = RunningUp(env, data_dir)
    try:
        attached = EmbeddedPostgres(data_dir)
        attached.attach()
        try:
            token = _issue_key(attached.url, "acme")
        finally:
            attached.stop()  # our use only: `up` keeps the server running
        address = urlsplit(up.url)
        sock = socket.create_connection((address.hostname, address.port), timeout=30)
        part_head = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; '
            'filename="slow.txt"\r\nContent-Type: text/plain\r\n\r\n'
        ).encode()
        declared = 50_000_000  # far more than will ever be sent
        sock.sendall(
            (
                f"POST /v1/ingest HTTP/1.1\r\nHost: {address.netloc}\r\n"
                f"Authorization: Bearer {token}\r\n"
                f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
                f"Content-Length: {declared}\r\n\r\n"
            ).encode()
            + part_head
            + b"slow line\n" * 20_000
        )
        deadline = time.monotonic() + 30
        while not _spooled(data_dir):
            assert time.monotonic() < deadline, "the upload never reached the spool"
            time.sleep(0.05)
        up.process.send_signal(signal.SIGTERM)
        status, headers, body = _read_response(sock)
        sock.close()
        assert status == 503, body
        assert headers["content-type"] == "application/problem+json"
        assert headers["connection"] == "close"
        assert int(headers["retry-after"]) > 0
        problem = json.loads(body)
        # Answered when the shutdown began (uvicorn's cancellation at its timeout is a 500).
        assert problem["code"] == "shutting-down"
        assert up.process.wait(timeout=60) == 0
        assert _spooled(data_dir) == []
    finally:
        up.stop(signal.SIGTERM)
