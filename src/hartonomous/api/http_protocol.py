"""uvicorn's httptools protocol with a bound on a request's head (request line and headers).

httptools sets no limit on the head (h11, uvicorn's other parser, stops at 16 KiB): a client
sending a 40 MB header kept the server buffering and parsing it, and three such requests held
the event loop for seconds. `BoundedHeadProtocol` counts the bytes received while a request's
head is incomplete and answers ``431 Request Header Fields Too Large`` (RFC 6585 §5), then closes
the connection, once they pass ``MAX_HEAD_BYTES``. The count is per chunk received, so the first
chunk of a body that arrives with its head counts too: the bound is set well above any read
(docs/api.md, "Errors").

Heads httptools refuses are problems too, not uvicorn's plain-text 400: a request target over
``MAX_TARGET_BYTES`` (httptools' URL parser holds no more) is a 414 naming the limit, any other
unparseable head a 400. Every such answer carries a new request id (``X-Request-ID`` and
``request_id``) and an ``instance``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from http import HTTPStatus
from typing import Any, cast

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from hartonomous.api.problems import REQUEST_ID_HEADER

__all__ = ["MAX_HEAD_BYTES", "MAX_TARGET_BYTES", "BoundedHeadProtocol"]

MAX_HEAD_BYTES = 1024 * 1024
"""Bytes a request's line and headers may take (1 MiB; nginx's default is 32 KiB)."""

MAX_TARGET_BYTES = 65_535
"""Bytes a request target (path and query) may take: httptools' URL parser holds no more."""

MAX_INSTANCE_CHARACTERS = 1024  # a longer path is not echoed into a problem's `instance`

_DETAIL = (
    f"the request line and headers are over {MAX_HEAD_BYTES} bytes (431: send smaller headers)"
)


class BoundedHeadProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` answering 431 to a request whose head passes ``MAX_HEAD_BYTES``."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_bytes = 0
        self._reading_head = True
        self.parser = cast(Any, _ReasonKeepingParser(self.parser))
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._reading_head:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._refuse()
                return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._head_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._reading_head = True
        super().on_message_complete()

    def _refuse(self) -> None:
        self._answer(
            431, "request-header-fields-too-large", "Request header fields too large", _DETAIL
        )
        self._reading_head = False

    def send_400_response(self, msg: str) -> None:
        # uvicorn's answer to a head httptools cannot parse: plain text, no request id. The
        # same, as a problem (docs/api.md, Errors); a request target httptools cannot hold is
        # a 414 naming its limit.
        url = getattr(self, "url", b"")
        if len(url) > MAX_TARGET_BYTES:
            detail = (
                f"the request target is {len(url)} bytes; at most {MAX_TARGET_BYTES} are "
                "accepted (414: send long values in a body)"
            )
            self._answer(414, "uri-too-long", "URI too long", detail)
            return
        # uvicorn's `msg` is always "Invalid HTTP request received."; httptools' own reason
        # ("Duplicate Content-Length", "Invalid header value char") says what is wrong.
        reason = getattr(self.parser, "reason", None) or msg
        self._answer(
            400, "invalid-http-request", "Invalid HTTP request", f"malformed request head: {reason}"
        )

    def _answer(self, status: int, code: str, title: str, detail: str) -> None:
        """Write a problem+json answer with a new request id, then close the connection."""
        request_id = uuid.uuid4().hex
        url = getattr(self, "url", b"")
        path = url.split(b"?", 1)[0].decode("latin-1")
        known = 0 < len(path) <= MAX_INSTANCE_CHARACTERS and path.isprintable()
        body = json.dumps(
            {
                "type": f"urn:hartonomous:problem:{code}",
                "title": title,
                "status": status,
                "detail": detail,
                # The path when it was read and is short; otherwise the occurrence itself.
                "instance": path if known else f"urn:uuid:{uuid.UUID(request_id)}",
                "code": code,
                "request_id": request_id,
            }
        ).encode()
        self.transport.write(
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode()
            + b"content-type: application/problem+json\r\n"
            + b"content-length: "
            + str(len(body)).encode()
            + b"\r\n"
            + REQUEST_ID_HEADER.lower().encode()
            + b": "
            + request_id.encode()
            + b"\r\n"
            + b"connection: close\r\n\r\n"
            + body
        )
        self.transport.close()


class _ReasonKeepingParser:
    """httptools' request parser, keeping the reason of the error it raised (uvicorn catches
    the error and answers with a fixed message); every other attribute is the parser's."""

    def __init__(self, parser: Any) -> None:
        self._parser = parser
        self.reason: str | None = None

    def feed_data(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.reason = str(exc) or None
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._parser, name)
