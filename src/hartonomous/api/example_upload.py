"""One uploaded file (plus small text fields) from a `multipart/form-data` body, streamed to disk.

Read by the one multipart reader, ``api/uploads.py`` (streamed to an upload spool under
``<data_dir>/uploads``, never held whole in memory, refused with 413 as soon as the body
passes its limit); this module adds what a route taking exactly one file needs: one file
part, an unknown field answered as a validation error (422), and the spool removed on exit
whatever the outcome. Form syntax: RFC 7578.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError

from hartonomous.api.uploads import UnexpectedFormFieldError, receive_files
from hartonomous.errors import UsageError
from hartonomous.ingest.uploads import UploadSpool

__all__ = ["Upload", "UploadError", "received_upload"]

_MAX_FIELD_BYTES = 1024


class UploadError(UsageError):
    """A multipart body that is not what the route takes (the message says how)."""


@dataclass
class Upload:
    """The received file (``path``, named ``filename`` by the client) and the text fields."""

    path: Path
    filename: str
    fields: dict[str, str] = field(default_factory=dict)


@asynccontextmanager
async def received_upload(
    request: Request,
    data_dir: Path,
    *,
    file_field: str,
    text_fields: frozenset[str],
    max_bytes: int,
) -> AsyncIterator[Upload]:
    """The request's file part ``file_field`` on disk, and its ``text_fields`` (each at most
    1,024 bytes); the spool holding the file is removed on exit, whatever happened.

    Raises what ``api.uploads.receive_files`` raises (413 over ``max_bytes``, 400 for a body
    that is not multipart, is malformed, has no file or a file name that cannot be one),
    ``UploadError`` (400) for more than one file, and ``RequestValidationError`` (422) naming
    an unknown field.
    """
    spool = await run_in_threadpool(UploadSpool, data_dir)
    try:
        try:
            fields = await receive_files(
                request,
                spool,
                max_bytes,
                dict.fromkeys(text_fields, _MAX_FIELD_BYTES),
                file_field=file_field,
                limit_setting=None,
            )
        except UnexpectedFormFieldError as exc:
            raise RequestValidationError(
                [{"loc": ("body", exc.field), "msg": "unknown field", "type": "extra_forbidden"}]
            ) from None
        if len(spool.files) != 1:
            raise UploadError(f"give one file in {file_field!r}, not several")
        ((filename, path),) = spool.files
        yield Upload(path, filename, fields)
    finally:
        await run_in_threadpool(spool.remove)
