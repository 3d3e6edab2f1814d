"""What the UI needs of the server's multipart reader (``api.uploads.receive_files``, passed in
by ``create_app``): typed here so the UI does not import the API package, and every upload,
the API's or a page's, is read by the one reader (streamed to a spool on disk, refused past
``[server] max_upload_bytes``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from starlette.requests import Request

from hartonomous.errors import HartonomousError
from hartonomous.ingest.uploads import InvalidUploadNameError, UploadSpool

__all__ = ["FileReceiver", "file_receiver", "refusal"]


class FileReceiver(Protocol):
    async def __call__(
        self,
        request: Request,
        spool: UploadSpool,
        limit: int,
        text_fields: Mapping[str, int] | None = None,
        *,
        file_field: str = ...,
        limit_setting: str | None = ...,
    ) -> dict[str, str]:
        """Spools the body's files (parts named ``file_field``, ``files`` by default); returns
        the text fields asked for. ``limit_setting`` names the setting ``limit`` comes from (for
        the 413's message; None: a fixed limit)."""
        ...


def file_receiver(request: Request) -> FileReceiver:
    receiver: FileReceiver = request.app.state.receive_files
    return receiver


def refusal(exc: HartonomousError, spool: UploadSpool, choose: str) -> str:
    """What to say beside a file field about a refused upload. A browser sends a file input
    left empty as one part with an empty file name: that is said as "choose …"; a name that
    was given but refused (``../x``) is named."""
    if isinstance(exc, InvalidUploadNameError) and not exc.name and not spool.files:
        return f"{choose}: no file was chosen"
    return str(exc)
