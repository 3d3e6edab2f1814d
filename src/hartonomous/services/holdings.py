"""Holding use cases for one tenant: list (all, or a page at a time), release, collect garbage.

Listings are newest first (``created_at``, then ``holding_id``, both descending); a page's
cursor carries the last item's pair, signed (services/pagination.py), so paging stays exact
while holdings are added or released.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import select, tuple_

from hartonomous.atoms.holdings import (
    GcReport,
    HoldingNotFoundError,
    collect_garbage,
    holding_dict,
    list_holdings,
    release_holding,
)
from hartonomous.db.tables import holdings
from hartonomous.errors import InvalidCursorError
from hartonomous.security.tenants import require_active_tenant
from hartonomous.services.pagination import Page, cursor_codec, page_of_rows
from hartonomous.services.platform import Platform

__all__ = [
    "GcReport",
    "HoldingNotFoundError",
    "all_holdings",
    "collect_unreferenced_atoms",
    "delete_holding",
    "holdings_page",
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
        created_at, holding_id = _position(codec.decode(_LISTING, tenant_id, cursor))
        query = query.where(
            tuple_(holdings.c.created_at, holdings.c.holding_id) < (created_at, holding_id)
        )
    query = query.order_by(holdings.c.created_at.desc(), holdings.c.holding_id.desc())
    with platform.engine.connect() as connection:
        require_active_tenant(connection, tenant_id)
        rows = connection.execute(query.limit(limit + 1)).all()
    return page_of_rows(
        rows,
        limit,
        holding_dict,
        lambda last: codec.encode(
            _LISTING, tenant_id, [last.created_at.isoformat(), str(last.holding_id)]
        ),
    )


def _position(position: list[object]) -> tuple[dt.datetime, uuid.UUID]:
    try:
        created_at, holding_id = position
        return dt.datetime.fromisoformat(str(created_at)), uuid.UUID(str(holding_id))
    except (TypeError, ValueError):
        raise InvalidCursorError("cursor holds no holdings position") from None


def delete_holding(platform: Platform, tenant_id: str, holding_id: uuid.UUID) -> None:
    """Release a holding; ``HoldingNotFoundError`` when the tenant has no such holding."""
    with platform.engine.connect() as connection:
        require_active_tenant(connection, tenant_id)
    release_holding(platform.engine, tenant_id, holding_id)


def collect_unreferenced_atoms(platform: Platform, batch_size: int = 1000) -> GcReport:
    """Delete atoms nothing references (atoms/holdings.py ``collect_garbage``), every tenant's."""
    return collect_garbage(platform.maintenance_engine, batch_size)
