"""uvicorn's httptools protocol with a bound on a request's head (request line and headers).

httptools sets no limit on the head (h11, uvicorn's other parser, stops at 16 KiB): a client
sending a 40 MB header kept the server buffering and parsing it, and three such requests held
the event loop for seconds. `BoundedHeadProtocol` counts the bytes received while a request's
head is incomplete and answers ``431 Request Header Fields Too Large`` (RFC 6585 §5), then closes
the connection, once they pass ``MAX_HEAD_BYTES``. The count is per chunk received, so the first
chunk of a body that arrives with its head counts too: the bound is set well above any read
(docs/api.md, "Limits").
"""

from __future__ import annotations

import asyncio
import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["MAX_HEAD_BYTES", "BoundedHeadProtocol"]

MAX_HEAD_BYTES = 1024 * 1024
"""Bytes a request's line and headers may take (1 MiB; nginx's default is 32 KiB)."""

_DETAIL = (
    f"the request line and headers are over {MAX_HEAD_BYTES} bytes (431: send smaller headers)"
)


class BoundedHeadProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` answering 431 to a request whose head passes ``MAX_HEAD_BYTES``."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_bytes = 0
        self._reading_head = True
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
        body = json.dumps(
            {
                "type": "about:blank",
                "title": "Request header fields too large",
                "status": 431,
                "detail": _DETAIL,
                "code": "request-header-fields-too-large",
            }
        ).encode()
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/problem+json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n"
            b"connection: close\r\n\r\n" + body
        )
        self._reading_head = False
        self.transport.close()
