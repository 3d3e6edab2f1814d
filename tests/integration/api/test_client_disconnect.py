"""A client that disconnects mid-body, on a real server and a real socket: one info line
(`client_disconnected`), no server error logged, nothing left in the upload spool."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from hartonomous.ingest.uploads import uploads_root
from hartonomous.security.roles import Role

from .conftest import IssueKey
from .real_server import ServerOutput, real_server


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


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[tuple[str, Path, ServerOutput]]:
    with real_server(database_url, tmp_path) as running:
        yield running


def test_a_client_gone_mid_body_is_one_info_line_and_leaves_no_spool(
    server: tuple[str, Path, ServerOutput], issue_key: IssueKey
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
