"""`GET /v1/ledger/entries`: the usage ledger, newest first, filtered, cursor-paginated.

A data scientist sees its own tenant's entries (``tenant_id`` absent or its own; another
tenant's is 404, as if it did not exist); an admin sees every tenant's, or one tenant's with
``tenant_id`` (docs/api.md, "Ledger").
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel

from hartonomous.api.auth import Caller, platform_of, requires
from hartonomous.api.fields import Timestamp
from hartonomous.errors import NotFoundError
from hartonomous.security.roles import Role
from hartonomous.services.ledger import LedgerEntry, LedgerFilter, list_ledger_entries

router = APIRouter(prefix="/v1/ledger", tags=["ledger"])

# PostgreSQL text cannot hold NUL: refused here, as a problem naming the parameter.
Name = Annotated[str | None, Query(min_length=1, max_length=256, pattern=r"^[^\x00]+$")]


class LedgerPage(BaseModel):
    items: list[LedgerEntry]
    next_cursor: str | None


@router.get("/entries")
def entries(
    request: Request,
    *,
    caller: Annotated[Caller, Depends(requires(Role.DATA_SCIENTIST))],
    tenant_id: Name = None,
    principal_id: Name = None,
    operation: Name = None,
    message_type: Name = None,
    recorded_since: Annotated[Timestamp | None, Query()] = None,
    recorded_before: Annotated[Timestamp | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=4096)] = None,
) -> LedgerPage:
    """Billed events newest first; money as decimal strings (never floats)."""
    if not caller.role.includes(Role.ADMIN):
        if tenant_id not in (None, caller.tenant_id):
            raise NotFoundError(f"tenant {tenant_id!r} not found")
        tenant_id = caller.tenant_id
    where = LedgerFilter(
        tenant_id=tenant_id,
        principal_id=principal_id,
        operation=operation,
        message_type=message_type,
        recorded_since=recorded_since,
        recorded_before=recorded_before,
    )
    page = list_ledger_entries(
        platform_of(request),
        where,
        limit=limit,
        cursor=cursor,
        across_tenants=caller.role.includes(Role.ADMIN),
    )
    return LedgerPage(items=list(page.items), next_cursor=page.next_cursor)
