"""What the UI needs of the server's multipart reader (``api.uploads.receive_files``, passed in
by ``create_app``): typed here so the UI does not import the API package, and every upload,
the API's or a page's, is read by the one reader (streamed to a spool on disk, refused past
``[server] max_upload_bytes``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from starlette.requests import Request

from hartonomous.ingest.uploads import UploadSpool

__all__ = ["FileReceiver", "file_receiver"]


class FileReceiver(Protocol):
    async def __call__(
        self,
        request: Request,
        spool: UploadSpool,
        limit: int,
        text_fields: Mapping[str, int] | None = None,
    ) -> dict[str, str]:
        """Spools the body's files (parts named ``files``); returns the text fields asked for."""
        ...


def file_receiver(request: Request) -> FileReceiver:
    receiver: FileReceiver = request.app.state.receive_files
    return receiver
