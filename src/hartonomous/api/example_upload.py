"""One uploaded file (plus small text fields) from a `multipart/form-data` body, streamed to disk.

The body is parsed as it arrives (python-multipart's streaming parser): the file's bytes go
straight to a file in a new folder under ``<data_dir>/uploads`` and are never held whole in
memory; the body is refused with 413 as soon as it passes its limit. The caller removes the
folder (``received_upload`` does) whatever the outcome. Form syntax: RFC 7578.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from hartonomous.errors import PayloadTooLargeError, UsageError

__all__ = ["Upload", "UploadError", "received_upload"]

_MAX_FIELD_BYTES = 1024
_MAX_FIELDS = 16
_MAX_NAME_CHARACTERS = 255
_SAFE_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,10}")


class UploadError(UsageError):
    """A multipart body that is malformed or not what the route takes (the message says how)."""


@dataclass
class Upload:
    """The received file (``path``, named ``filename`` by the client) and the text fields."""

    path: Path
    filename: str
    fields: dict[str, str] = field(default_factory=dict)


@dataclass
class _Part:
    name: str = ""
    filename: str | None = None
    data: bytearray = field(default_factory=bytearray)


class _Receiver:
    """The parser's callbacks: one file part named ``file_field``, a few small text fields."""

    def __init__(self, folder: Path, file_field: str, text_fields: frozenset[str]) -> None:
        self.folder = folder
        self.file_field = file_field
        self.text_fields = text_fields
        self.fields: dict[str, str] = {}
        self.part = _Part()
        self.header_name = b""
        self.header_value = b""
        self.disposition = b""
        self.stream: IO[bytes] | None = None
        self.upload: Upload | None = None

    def on_part_begin(self) -> None:
        self.part = _Part()
        self.disposition = b""

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        if self.header_name.strip().lower() == b"content-disposition":
            self.disposition = self.header_value
        self.header_name = self.header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.disposition)
        name = _text(options.get(b"name"), "part name")
        if not name:
            raise UploadError("a part has no name (Content-Disposition: form-data; name=…)")
        self.part.name = name
        if name == self.file_field:
            if self.upload is not None:
                raise UploadError(f"give one file in {self.file_field!r}, not several")
            filename = _text(options.get(b"filename"), "file name")
            self.upload = Upload(self._file_path(filename), _checked_name(filename))
            self.stream = self.upload.path.open("xb")
            return
        if name not in self.text_fields:
            raise _unknown_field(name)
        if len(self.fields) >= _MAX_FIELDS or name in self.fields:
            raise UploadError(f"field {name!r} is given more than once")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.part.name == self.file_field:
            assert self.stream is not None
            self.stream.write(data[start:end])
            return
        self.part.data += data[start:end]
        if len(self.part.data) > _MAX_FIELD_BYTES:
            raise UploadError(f"field {self.part.name!r} is over {_MAX_FIELD_BYTES} bytes")

    def on_part_end(self) -> None:
        if self.part.name == self.file_field:
            assert self.stream is not None
            self.stream.close()
            return
        try:
            self.fields[self.part.name] = self.part.data.decode("utf-8")
        except UnicodeDecodeError:
            raise UploadError(f"field {self.part.name!r} is not UTF-8") from None

    def _file_path(self, filename: str | None) -> Path:
        # The client's name labels the file in messages; only a plain suffix reaches the disk
        # (some formats are told apart by it, docs/ingest.md).
        suffix = Path(filename or "").suffix
        return self.folder / ("example" + (suffix if _SAFE_SUFFIX.fullmatch(suffix) else ""))

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()


@asynccontextmanager
async def received_upload(
    request: Request,
    data_dir: Path,
    *,
    file_field: str,
    text_fields: frozenset[str],
    max_bytes: int,
) -> AsyncIterator[Upload]:
    """The request's file part ``file_field`` on disk, and its ``text_fields``; the folder
    holding the file is removed on exit, whatever happened.

    Raises ``PayloadTooLargeError`` (413) for a body over ``max_bytes`` (by Content-Length, or
    as soon as more arrives), ``UploadError`` (400) for a body that is not multipart, is
    malformed, lacks the file or repeats a part, and ``RequestValidationError`` (422) naming an
    unknown field.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    media_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if media_type != b"multipart/form-data" or not boundary:
        raise UploadError("send the file as multipart/form-data (with a boundary)")
    uploads = data_dir / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="search-example-", dir=uploads))
    receiver = _Receiver(folder, file_field, text_fields)
    try:
        parser = MultipartParser(
            boundary,
            {
                "on_part_begin": receiver.on_part_begin,
                "on_header_field": receiver.on_header_field,
                "on_header_value": receiver.on_header_value,
                "on_header_end": receiver.on_header_end,
                "on_headers_finished": receiver.on_headers_finished,
                "on_part_data": receiver.on_part_data,
                "on_part_end": receiver.on_part_end,
            },
        )
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes:
                raise _too_large(max_bytes)
            parser.write(chunk)
        parser.finalize()
        receiver.close()
        if receiver.upload is None or receiver.stream is None or not receiver.stream.closed:
            raise UploadError(f"the body has no complete file part named {file_field!r}")
        receiver.upload.fields = receiver.fields
        yield receiver.upload
    except FormParserError as exc:
        raise UploadError(f"the multipart body is malformed: {exc}") from None
    finally:
        receiver.close()
        shutil.rmtree(folder, ignore_errors=True)


def _too_large(max_bytes: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(f"the request body is over the limit of {max_bytes:,} bytes")


def _text(value: bytes | None, what: str) -> str | None:
    if value is None:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise UploadError(f"the {what} is not UTF-8") from None


def _checked_name(filename: str | None) -> str:
    """The client's file name, refused when it is not a plain name (it is only ever a label,
    but a name with a path in it is a client error worth telling)."""
    if not filename:
        return "the example"
    if (
        "\0" in filename
        or "/" in filename
        or "\\" in filename
        or filename in {".", ".."}
        or len(filename) > _MAX_NAME_CHARACTERS
    ):
        raise UploadError(f"file name {filename!r} is not a plain file name")
    return filename


def _unknown_field(name: str) -> RequestValidationError:
    return RequestValidationError(
        [{"loc": ("body", name), "msg": "unknown field", "type": "extra_forbidden"}]
    )
