"""Reading a `multipart/form-data` request body (RFC 7578) straight to an upload spool.

The body is parsed as it arrives (python-multipart's streaming parser): each chunk's file bytes
are written to the part's spooled file at once, so memory holds one chunk, whatever the upload's
size. The body's byte count is checked against the limit as it grows: past it the upload stops
with ``PayloadTooLargeError`` (413) before more is read. Every part must be a file (a
``filename`` in its ``Content-Disposition``) under the field name ``files``.
"""

from __future__ import annotations

from typing import BinaryIO

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from hartonomous.api.shutdown import shutdown_notice
from hartonomous.errors import PayloadTooLargeError, UsageError
from hartonomous.ingest.uploads import UploadSpool

__all__ = ["FILES_FIELD", "receive_files"]

FILES_FIELD = "files"
_LIMIT_SETTING = "[server] max_upload_bytes"


class _Receiver:
    """python-multipart callbacks writing each part to its own spooled file."""

    def __init__(self, spool: UploadSpool) -> None:
        self.spool = spool
        self.header_field = bytearray()
        self.header_value = bytearray()
        self.disposition: bytes | None = None
        self.handle: BinaryIO | None = None
        self.ended = False

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self.part_begin,
            "on_header_field": lambda data, start, end: self.header_field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self.header_value.extend(data[start:end]),
            "on_header_end": self.header_end,
            "on_headers_finished": self.headers_finished,
            "on_part_data": self.part_data,
            "on_part_end": self.part_end,
            "on_end": self.end,
        }

    def part_begin(self) -> None:
        self.disposition = None

    def header_end(self) -> None:
        if bytes(self.header_field).lower() == b"content-disposition":
            self.disposition = bytes(self.header_value)
        self.header_field.clear()
        self.header_value.clear()

    def headers_finished(self) -> None:
        kind, options = parse_options_header(self.disposition)
        field = options.get(b"name", b"").decode("utf-8", "replace")
        if kind != b"form-data" or field != FILES_FIELD:
            raise UsageError(
                f"unexpected form field {field!r}: send each file as a part named {FILES_FIELD!r}"
            )
        filename = options.get(b"filename")
        path = self.spool.new_file(None if filename is None else filename.decode("utf-8"))
        self.handle = path.open("xb")

    def part_data(self, data: bytes, start: int, end: int) -> None:
        assert self.handle is not None
        self.handle.write(data[start:end])

    def part_end(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None

    def end(self) -> None:
        self.ended = True

    def close(self) -> None:
        self.part_end()


async def receive_files(request: Request, spool: UploadSpool, limit: int) -> None:
    """Spool every file of the request's multipart body; ``spool.files`` lists them.

    Raises ``ShuttingDownError`` when the server begins shutting down before the body has
    arrived, ``PayloadTooLargeError`` past ``limit`` bytes of body (checked on Content-Length
    first, then on what arrives), ``InvalidUploadNameError`` for a file name that cannot be
    one, and ``UsageError`` for a body that is not multipart/form-data, is malformed, holds a
    part other than a file named ``files``, or holds no file. On any error the caller removes
    the spool: what was written so far is never ingested.
    """
    kind, options = parse_options_header(request.headers.get("content-type"))
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise UsageError(
            "send the files as multipart/form-data (with a boundary), "
            f"each part named {FILES_FIELD!r}"
        )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    receiver = _Receiver(spool)
    received = 0
    try:
        parser = MultipartParser(boundary, receiver.callbacks())  # type: ignore[arg-type]
        notice = shutdown_notice(request)
        chunks = aiter(request.stream())
        while (chunk := await notice.first(anext(chunks, None))) is not None:
            received += len(chunk)
            if received > limit:
                raise _too_large(limit)
            # Parsing and the file writes run in a worker thread: a slow disk never holds up
            # the event loop, and so the other requests this process serves.
            await run_in_threadpool(parser.write, chunk)
        await run_in_threadpool(parser.finalize)
    except FormParserError as exc:  # a malformed body, or a boundary over RFC 2046's length
        raise UsageError(f"malformed multipart body: {exc}") from None
    except UnicodeDecodeError:
        raise UsageError("a file name is not UTF-8") from None
    finally:
        receiver.close()
    if not receiver.ended:
        raise UsageError("the multipart body ended before its closing boundary")
    if not spool.files:
        raise UsageError(f"no file: send one or more parts named {FILES_FIELD!r}")


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"the upload is larger than the limit of {limit} bytes ({_LIMIT_SETTING})"
    )
