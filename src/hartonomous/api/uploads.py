"""Reading a `multipart/form-data` request body (RFC 7578) straight to an upload spool.

The body is parsed as it arrives (python-multipart's streaming parser): each chunk's file bytes
are written to the part's spooled file at once, so memory holds one chunk, whatever the upload's
size. The body's byte count is checked against the limit as it grows: past it the upload stops
with ``PayloadTooLargeError`` (413) before more is read. Every part must be a file (a
``filename`` in its ``Content-Disposition``) under the route's file field name (``files``
unless it says otherwise), or one of the text fields the route takes (kept in memory, each
up to its own byte limit). The one reader of multipart bodies: ingestion, the inference
upload and the search by example (``api/example_upload.py``) all read through it.

A file's name is its part's ``filename*`` parameter when it has one (RFC 6266 section 4.3:
it wins over ``filename``), else its ``filename``. RFC 7578 forbids ``filename*`` in form data,
but clients send it for names outside ASCII (``filename*=UTF-8''%E6%97%A5.txt``): its value is
an RFC 8187 ``charset'language'percent-encoded-bytes``, UTF-8 or ISO-8859-1, decoded strictly
and then checked as a plain name is (``check_upload_name``: no NUL, ``..``, path separator).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import BinaryIO
from urllib.parse import unquote_to_bytes

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from hartonomous.api.shutdown import shutdown_notice
from hartonomous.errors import PayloadTooLargeError, UsageError
from hartonomous.ingest.uploads import InvalidUploadNameError, UploadSpool

__all__ = ["FILES_FIELD", "UnexpectedFormFieldError", "multipart_body", "receive_files"]

FILES_FIELD = "files"
_LIMIT_SETTING = "[server] max_upload_bytes"


class UnexpectedFormFieldError(UsageError):
    """A part under a name the route does not take (``field``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class _Receiver:
    """python-multipart callbacks writing each part to its own spooled file."""

    def __init__(self, spool: UploadSpool, file_field: str, text_fields: Mapping[str, int]) -> None:
        self.spool = spool
        self.file_field = file_field
        self.text_fields = text_fields
        self.texts: dict[str, str] = {}
        self.text: tuple[str, bytearray] | None = None
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
        self.text = None

    def header_end(self) -> None:
        if bytes(self.header_field).lower() == b"content-disposition":
            self.disposition = bytes(self.header_value)
        self.header_field.clear()
        self.header_value.clear()

    def headers_finished(self) -> None:
        kind, options = parse_options_header(self.disposition)
        field = options.get(b"name", b"").decode("utf-8", "replace")
        # python-multipart's parser drops `filename*`: read from the header itself.
        extended = _extended_filename(self.disposition or b"")
        plain = options.get(b"filename")
        filename = extended
        if filename is None and plain is not None:
            filename = plain.decode("utf-8")
        if kind == b"form-data" and filename is None and field in self.text_fields:
            if field in self.texts:
                raise UsageError(f"form field {field!r} is given more than once")
            self.text = (field, bytearray())
            return
        if kind != b"form-data" or field != self.file_field:
            raise UnexpectedFormFieldError(
                field,
                f"unexpected form field {field!r}: send each file as a part named "
                f"{self.file_field!r}"
                + "".join(f", or a text field {name!r}" for name in sorted(self.text_fields)),
            )
        path = self.spool.new_file(filename)
        self.handle = path.open("xb")

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if self.text is not None:
            field, value = self.text
            value.extend(data[start:end])
            if len(value) > self.text_fields[field]:
                raise UsageError(f"form field {field!r} is over {self.text_fields[field]} bytes")
            return
        assert self.handle is not None
        self.handle.write(data[start:end])

    def part_end(self) -> None:
        if self.text is not None:
            field, value = self.text
            self.text = None
            try:
                self.texts[field] = value.decode("utf-8")
            except UnicodeDecodeError:
                raise UsageError(f"form field {field!r} is not UTF-8") from None
        if self.handle is not None:
            self.handle.close()
            self.handle = None

    def end(self) -> None:
        self.ended = True

    def close(self) -> None:
        self.part_end()


# One parameter of a Content-Disposition: a name, then a quoted string or a bare value.
_PARAMETER = re.compile(rb';\s*([^\s=;]+)\s*=\s*("(?:\\.|[^"\\])*"|[^;]*)')
_EXT_VALUE_CHARSETS = ("utf-8", "iso-8859-1")


def _extended_filename(disposition: bytes) -> str | None:
    """The decoded ``filename*`` of a Content-Disposition (RFC 6266, RFC 8187), None without
    one; ``InvalidUploadNameError`` when it is not a well-formed ext-value or not text in its
    charset (the name itself is checked afterwards, as a plain one is)."""
    for found in _PARAMETER.finditer(disposition):
        if found.group(1).lower() == b"filename*":
            return _ext_value(found.group(2).strip())
    return None


def _ext_value(value: bytes) -> str:
    charset, _, rest = value.partition(b"'")
    _language, separated, encoded = rest.partition(b"'")
    named = charset.decode("latin-1").lower()
    if not separated or named not in _EXT_VALUE_CHARSETS or not encoded.isascii():
        raise InvalidUploadNameError(
            f"filename* {value[:60].decode('latin-1')!r} is not charset'language'value with "
            "the charset UTF-8 or ISO-8859-1 and the value percent-encoded (RFC 8187)",
            value.decode("latin-1"),
        )
    try:
        return unquote_to_bytes(encoded).decode(named)
    except UnicodeDecodeError as exc:
        raise InvalidUploadNameError(
            f"file name (filename*) is not valid UTF-8 (byte {exc.start})",
            encoded.decode("ascii"),
        ) from None


def multipart_body(properties: dict[str, object], required: list[str]) -> dict[str, object]:
    """A route's ``openapi_extra`` documenting its required multipart/form-data body with
    these ``properties`` (OpenAPI 3.1 schemas by field name)."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {"type": "object", "properties": properties, "required": required}
                }
            },
        }
    }


async def receive_files(
    request: Request,
    spool: UploadSpool,
    limit: int,
    text_fields: Mapping[str, int] | None = None,
    *,
    file_field: str = FILES_FIELD,
    limit_setting: str | None = _LIMIT_SETTING,
) -> dict[str, str]:
    """Spool every file of the request's multipart body; ``spool.files`` lists them. The
    text fields given (``text_fields``: name → most bytes) are returned by name. Files come
    in parts named ``file_field``; ``limit_setting`` names the setting ``limit`` comes from,
    for the 413's message (None: a fixed limit).

    Raises ``ShuttingDownError`` when the server begins shutting down before the body has
    arrived, ``PayloadTooLargeError`` past ``limit`` bytes of body (checked on Content-Length
    first, then on what arrives), ``InvalidUploadNameError`` for a file name that cannot be
    one, and ``UsageError`` for a body that is not multipart/form-data, is malformed, holds a
    part other than a file named ``file_field`` or a text field given
    (``UnexpectedFormFieldError``), repeats a text field or
    holds one over its limit or not UTF-8, or holds no file. On any error the caller removes
    the spool: what was written so far is never ingested.
    """
    kind, options = parse_options_header(request.headers.get("content-type"))
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise UsageError(
            "send the files as multipart/form-data (with a boundary), "
            f"each part named {file_field!r}"
        )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit, limit_setting)
    receiver = _Receiver(spool, file_field, text_fields or {})
    received = 0
    try:
        parser = MultipartParser(boundary, receiver.callbacks())  # type: ignore[arg-type]
        notice = shutdown_notice(request)
        chunks = aiter(request.stream())
        while (chunk := await notice.first(anext(chunks, None))) is not None:
            received += len(chunk)
            if received > limit:
                raise _too_large(limit, limit_setting)
            # Parsing and the file writes run in a worker thread: a slow disk never holds up
            # the event loop, and so the other requests this process serves.
            await run_in_threadpool(parser.write, chunk)
        await run_in_threadpool(parser.finalize)
    except FormParserError as exc:  # a malformed body, or a boundary over RFC 2046's length
        raise UsageError(f"malformed multipart body: {exc}") from None
    except UnicodeDecodeError:
        raise InvalidUploadNameError("a file name is not UTF-8", None) from None
    finally:
        receiver.close()
    if not receiver.ended:
        raise UsageError("the multipart body ended before its closing boundary")
    if not spool.files:
        # Ingestion takes many files; the search by example and others take one.
        wanted = "one or more parts" if file_field == FILES_FIELD else "a part"
        raise UsageError(f"no file: send {wanted} named {file_field!r}")
    return receiver.texts


def _too_large(limit: int, setting: str | None) -> PayloadTooLargeError:
    source = "" if setting is None else f" ({setting})"
    return PayloadTooLargeError(f"the upload is larger than the limit of {limit} bytes{source}")
