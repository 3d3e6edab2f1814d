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
from hartonomous.errors import UsageError
from hartonomous.security.tenants import require_active_tenant
from hartonomous.services.platform import Platform

__all__ = [
    "AtomContent",
    "AtomIdError",
    "AtomNotFoundError",
    "AtomSummary",
    "atom_component_stream",
    "atom_content",
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


def atom_component_stream(platform: Platform, tenant_id: str, atom_id: bytes) -> bytes:
    """A visible composite atom's ComponentStream (v1 binary, docs/atoms.md).

    Raises ``AtomNotFoundError``, or ``NotCompositeError`` (409) for a leaf.
    """
    with platform.engine.connect() as connection:
        require_active_tenant(connection, tenant_id)
        require_visible(connection, tenant_id, atom_id)
        return component_stream(connection, atom_id)
