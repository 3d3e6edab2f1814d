"""Holding use cases for one tenant: list (all, or a page at a time), show one, find the one a
search hit came from, release, collect garbage.

Listings are newest first (``created_at``, then ``holding_id``, both descending); a page's
cursor carries the last item's pair, signed (services/pagination.py), so paging stays exact
while holdings are added or released.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import select, tuple_

from hartonomous.atoms.holdings import (
    GcReport,
    HoldingNotFoundError,
    collect_garbage,
    holding_dict,
    list_holdings,
    release_holding,
)
from hartonomous.atoms.read import holders_of
from hartonomous.db.tables import atoms, holdings
from hartonomous.errors import InvalidCursorError
from hartonomous.security.tenants import require_active_tenant
from hartonomous.services.pagination import Page, cursor_codec
from hartonomous.services.platform import Platform

__all__ = [
    "GcReport",
    "HoldingDetails",
    "HoldingNotFoundError",
    "all_holdings",
    "collect_unreferenced_atoms",
    "delete_holding",
    "holding_reaching",
    "holdings_page",
    "show_holding",
]

_LISTING = "holdings"


def all_holdings(platform: Platform, tenant_id: str) -> list[dict[str, object]]:
    """Every holding of the tenant, newest first (``holding_dict`` shape)."""
    with platform.engine.connect() as connection:
        require_active_tenant(connection, tenant_id)
        return list_holdings(connection, tenant_id)


def holdings_page(
    platform: Platform, tenant_id: str, limit: int, cursor: str | None = None
) -> Page[dict[str, object]]:
    """Up to ``limit`` holdings after ``cursor`` (None: from the newest), and the next cursor.

    Raises ``InvalidCursorError`` for a cursor this server did not issue to this tenant for
    this listing, or the tenant errors of ``require_active_tenant``.
    """
    codec = cursor_codec(platform.engine)
    query = select(holdings).where(holdings.c.tenant_id == tenant_id)
    if cursor is not None:
        created_at, holding_id = _position(codec.decode(_LISTING, tenant_id, cursor, filters={}))
        query = query.where(
            tuple_(holdings.c.created_at, holdings.c.holding_id) < (created_at, holding_id)
        )
    query = query.order_by(holdings.c.created_at.desc(), holdings.c.holding_id.desc())
    with platform.engine.connect() as connection:
        require_active_tenant(connection, tenant_id)
        rows = connection.execute(query.limit(limit + 1)).all()
    items = [holding_dict(row) for row in rows[:limit]]
    following = None
    if len(rows) > limit:
        last = rows[limit - 1]
        following = codec.encode(
            _LISTING, tenant_id, [last.created_at.isoformat(), str(last.holding_id)], filters={}
        )
    return Page(items, following)


def _position(position: list[object]) -> tuple[dt.datetime, uuid.UUID]:
    try:
        created_at, holding_id = position
        return dt.datetime.fromisoformat(str(created_at)), uuid.UUID(str(holding_id))
    except (TypeError, ValueError):
        raise InvalidCursorError("cursor holds no holdings position") from None


@dataclass(frozen=True)
class HoldingDetails:
    """One holding of a tenant: where it came from, its metadata, its atom (kind, modality,
    subtype, size in bytes) and the ingestion job that made it (None: made otherwise)."""

    holding_id: str
    atom_id: str
    source_uri: str
    source_type: str
    visibility: str
    job_id: str | None
    created_at: dt.datetime
    metadata: dict[str, object]
    atom_kind: str
    atom_modality: str
    atom_subtype: str
    atom_size_bytes: int


def show_holding(platform: Platform, tenant_id: str, holding_id: uuid.UUID) -> HoldingDetails:
    """The tenant's holding; ``HoldingNotFoundError`` (404) when the tenant has none with this
    id (another tenant's included), or the tenant errors of ``require_active_tenant``."""
    query = (
        select(
            holdings,
            atoms.c.kind,
            atoms.c.modality,
            atoms.c.subtype,
            atoms.c.size_bytes,
        )
        .join(atoms, atoms.c.atom_id == holdings.c.atom_id)
        .where(holdings.c.tenant_id == tenant_id, holdings.c.holding_id == holding_id)
    )
    with platform.engine.connect() as connection:
        require_active_tenant(connection, tenant_id)
        row = connection.execute(query).first()
    if row is None:
        raise HoldingNotFoundError(f"holding {holding_id} not found for tenant {tenant_id!r}")
    return HoldingDetails(
        holding_id=str(row.holding_id),
        atom_id=bytes(row.atom_id).hex(),
        source_uri=row.source_uri,
        source_type=row.source_type,
        visibility=row.visibility,
        job_id=None if row.job_id is None else str(row.job_id),
        created_at=row.created_at,
        metadata=row.metadata,
        atom_kind=row.kind,
        atom_modality=row.modality,
        atom_subtype=row.subtype,
        atom_size_bytes=row.size_bytes,
    )


def holding_reaching(
    platform: Platform, tenant_id: str, atom_id: bytes, source_uri: str
) -> uuid.UUID:
    """The tenant's newest holding from ``source_uri`` that holds ``atom_id`` or an atom
    containing it: the holding a search hit's source names (docs/search.md, "source").

    Raises ``HoldingNotFoundError`` when the tenant has none (the hit came from the public
    corpus, or the holding was released since).
    """
    with platform.engine.connect() as connection:
        require_active_tenant(connection, tenant_id)
        found = [
            h for h in holders_of(connection, tenant_id, atom_id) if h.source_uri == source_uri
        ]
    if not found:
        raise HoldingNotFoundError(
            f"tenant {tenant_id!r} has no holding from {source_uri!r} reaching atom {atom_id.hex()}"
        )
    newest = max(found, key=lambda h: (h.created_at, str(h.holding_id)))
    return uuid.UUID(str(newest.holding_id))


def delete_holding(platform: Platform, tenant_id: str, holding_id: uuid.UUID) -> None:
    """Release a holding; ``HoldingNotFoundError`` when the tenant has no such holding."""
    with platform.engine.connect() as connection:
        require_active_tenant(connection, tenant_id)
    release_holding(platform.engine, tenant_id, holding_id)


def collect_unreferenced_atoms(platform: Platform, batch_size: int = 1000) -> GcReport:
    """Delete atoms nothing references (atoms/holdings.py ``collect_garbage``), every tenant's."""
    return collect_garbage(platform.maintenance_engine, batch_size)
