"""Atom use cases for one tenant: show an atom, export its bytes (whole, a byte range, or a
composite's ComponentStream).

An atom is visible to a tenant when the tenant holds it or something that contains it
(atoms/read.py); anything else, another tenant's atom included, is ``AtomNotFoundError`` (404,
never 403: whether an atom exists elsewhere is not told). Bytes are streamed in chunks of leaf
payloads, never the whole blob in memory (docs/atoms.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import select

from hartonomous.atoms.hashing import hex_to_digest
from hartonomous.atoms.read import (
    AtomNotFoundError,
    AtomSummary,
    component_stream,
    read_atom_bytes,
    require_visible,
    summarise,
)
from hartonomous.db.tables import atoms
from hartonomous.errors import NotFoundError, PayloadTooLargeError, UsageError
from hartonomous.security.tenants import require_active_tenant
from hartonomous.services.platform import Platform

__all__ = [
    "AtomContent",
    "AtomIdError",
    "AtomMedia",
    "AtomNotFoundError",
    "AtomSummary",
    "NoPreviewError",
    "atom_component_stream",
    "atom_content",
    "atom_media",
    "parse_atom_id",
    "show_atom",
]


class AtomIdError(UsageError, ValueError):
    """Text that is not an atom id (64 hexadecimal characters, the SHA-256 of the content)."""

    code = "invalid-atom-id"


def parse_atom_id(atom_id: str) -> bytes:
    """The 32-byte digest an atom id names; ``AtomIdError`` naming the text otherwise."""
    try:
        return hex_to_digest(atom_id.lower())
    except ValueError:
        raise AtomIdError(f"{atom_id!r} is not an atom id (64 hex characters)") from None


def show_atom(platform: Platform, tenant_id: str, atom_id: bytes) -> AtomSummary:
    """The atom, a summary of its children and the tenant's holdings that contain it.

    Raises ``AtomNotFoundError``, or the tenant errors of ``require_active_tenant``.
    """
    with platform.engine.connect() as connection:
        require_active_tenant(connection, tenant_id)
        return summarise(connection, tenant_id, atom_id)


@dataclass(frozen=True)
class AtomContent:
    """A visible atom's exact bytes: ``size_bytes`` long, read with ``chunks``."""

    platform: Platform
    atom_id: bytes
    size_bytes: int

    def chunks(self, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
        """Bytes ``[start, stop)`` in order, a chunk (at most one leaf payload) at a time.

        The connection is held while the iterator runs and returned when it ends or is closed.
        """
        with self.platform.engine.connect() as connection:
            yield from read_atom_bytes(connection, self.atom_id, start, stop)


def atom_content(platform: Platform, tenant_id: str, atom_id: bytes) -> AtomContent:
    """The atom's content, once the tenant may read it (``AtomNotFoundError`` otherwise)."""
    with platform.engine.connect() as connection:
        require_active_tenant(connection, tenant_id)
        require_visible(connection, tenant_id, atom_id)
        size = connection.execute(
            select(atoms.c.size_bytes).where(atoms.c.atom_id == atom_id)
        ).scalar_one()
    return AtomContent(platform, atom_id, size)


# What browsers show (`<img>`, `<audio>`): (modality, subtype as ingestion stores it) -> media
# type. The subtype is what ingest/extractors/sniff.py read from the file's signature.
_BROWSER_MEDIA = {
    ("image", "png"): "image/png",
    ("image", "jpeg"): "image/jpeg",
    ("image", "gif"): "image/gif",
    ("image", "webp"): "image/webp",
    ("image", "bmp"): "image/bmp",
    ("audio", "wav"): "audio/wav",
    ("audio", "flac"): "audio/flac",
    ("audio", "ogg"): "audio/ogg",
    ("audio", "mp3"): "audio/mpeg",
}


class NoPreviewError(NotFoundError):
    """A visible atom that is not an image or sound a browser can show."""

    code = "no-preview"


@dataclass(frozen=True)
class AtomMedia:
    """A visible image or sound atom's bytes (``content``) and their media type."""

    content: AtomContent
    media_type: str


def atom_media(platform: Platform, tenant_id: str, atom_id: bytes, max_bytes: int) -> AtomMedia:
    """The atom's bytes with the media type of its modality and subtype (PNG, JPEG, GIF, WebP,
    BMP images; WAV, FLAC, Ogg, MP3 sounds), for a thumbnail or a player.

    Raises ``AtomNotFoundError`` (not visible), ``NoPreviewError`` (404: another kind of
    atom) and ``PayloadTooLargeError`` (413) over ``max_bytes``.
    """
    with platform.engine.connect() as connection:
        require_active_tenant(connection, tenant_id)
        require_visible(connection, tenant_id, atom_id)
        row = connection.execute(
            select(atoms.c.modality, atoms.c.subtype, atoms.c.size_bytes).where(
                atoms.c.atom_id == atom_id
            )
        ).one()
    media_type = _BROWSER_MEDIA.get((row.modality, row.subtype))
    if media_type is None:
        raise NoPreviewError(
            f"atom {atom_id.hex()} ({row.modality}/{row.subtype}) is not an image or sound "
            "a browser shows"
        )
    if row.size_bytes > max_bytes:
        raise PayloadTooLargeError(
            f"atom {atom_id.hex()} is {row.size_bytes} bytes, over the preview limit of "
            f"{max_bytes}: download it instead"
        )
    return AtomMedia(AtomContent(platform, atom_id, row.size_bytes), media_type)


def atom_component_stream(platform: Platform, tenant_id: str, atom_id: bytes) -> bytes:
    """A visible composite atom's ComponentStream (v1 binary, docs/atoms.md).

    Raises ``AtomNotFoundError``, or ``NotCompositeError`` (409) for a leaf.
    """
    with platform.engine.connect() as connection:
        require_active_tenant(connection, tenant_id)
        require_visible(connection, tenant_id, atom_id)
        return component_stream(connection, atom_id)
