"""Heads the server refuses before any route (api/http_protocol.py): each answer is a problem
with `instance`, `request_id` and `X-Request-ID`, naming the limit (docs/api.md, Errors).

A real uvicorn server with the protocol `up` and `serve` use, over raw sockets (HTTP clients
refuse to send such heads); the app behind it is never reached, so a plain one serves."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from hartonomous.api.http_protocol import MAX_HEAD_BYTES, MAX_TARGET_BYTES, BoundedHeadProtocol


async def _ok(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(scope="module")
def address() -> Iterator[tuple[str, int]]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    config = uvicorn.Config(_ok, http=BoundedHeadProtocol, log_config=None, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:  # start-up, not a timed assertion
        time.sleep(0.01)
    yield sock.getsockname()
    server.should_exit = True
    thread.join()


def _answer(address: tuple[str, int], head: bytes) -> tuple[bytes, dict[str, str], Any]:
    with socket.create_connection(address, timeout=30) as client:
        with contextlib.suppress(OSError):  # refused while still sending
            client.sendall(head)
        received = b""
        while chunk := client.recv(65536):
            received += chunk
    top, _, body = received.partition(b"\r\n\r\n")
    status_line, *lines = top.decode("latin-1").split("\r\n")
    headers = {name.lower(): value for name, _, value in (line.partition(": ") for line in lines)}
    return status_line.encode(), headers, json.loads(body)


def _assert_problem(answer: tuple[bytes, dict[str, str], Any], status: int, *words: str) -> None:
    status_line, headers, problem = answer
    assert status_line.startswith(f"HTTP/1.1 {status} ".encode()), status_line
    assert headers["content-type"] == "application/problem+json"
    assert problem["status"] == status
    assert problem["request_id"] == headers["x-request-id"]
    assert problem["instance"]
    for word in words:
        assert word in problem["detail"], (word, problem["detail"])


def test_a_request_target_past_httptools_limit_is_a_414_naming_it(
    address: tuple[str, int],
) -> None:
    for length in (MAX_TARGET_BYTES + 1, 200_000):
        head = b"GET /" + b"a" * length + b" HTTP/1.1\r\nHost: t\r\n\r\n"
        _assert_problem(_answer(address, head), 414, str(MAX_TARGET_BYTES))
    within = (
        b"GET /"
        + b"a" * (MAX_TARGET_BYTES - 10)
        + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(address, timeout=30) as client:
        client.sendall(within)
        assert client.recv(65536).startswith(b"HTTP/1.1 200 ")


def test_heads_over_the_bound_and_unparseable_ones_are_problems_with_request_ids(
    address: tuple[str, int],
) -> None:
    big = b"GET /health/live HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES + 1024)
    answer = _answer(address, big + b"\r\n\r\n")
    _assert_problem(answer, 431, str(MAX_HEAD_BYTES))
    _assert_problem(_answer(address, b"NOT HTTP AT ALL\r\n\r\n"), 400)


@pytest.mark.parametrize(
    ("head", "reason"),
    [
        (b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n", "Content-Length"),
        (
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "Duplicate Content-Length",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Length: 4\r\n\r\n",
            "Transfer-Encoding",
        ),
        (b"GET / HTTP/1.1\r\nHost: t\r\nX-Request-ID: a\x1bb\r\n\r\n", "header value"),
    ],
)
def test_a_malformed_head_is_a_400_giving_the_parsers_reason(
    address: tuple[str, int], head: bytes, reason: str
) -> None:
    """Each of these heads is HTTP/1.1: the answer named "not HTTP/1.1" as the cause."""
    answer = _answer(address, head)
    _assert_problem(answer, 400, "malformed request head", reason)
    assert "not HTTP/1.1" not in answer[2]["detail"]
