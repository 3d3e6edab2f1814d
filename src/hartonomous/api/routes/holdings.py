"""`/v1/holdings`: what the caller's tenant holds, a page at a time; release one (docs/api.md)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Query, Request, Response
from pydantic import BaseModel

from hartonomous.api.auth import Caller, platform_of, requires
from hartonomous.api.fields import ASCII_INTEGER
from hartonomous.api.routing import api_router
from hartonomous.security.roles import Role
from hartonomous.services.holdings import delete_holding, holdings_page

router = api_router(prefix="/v1/holdings", tags=["holdings"])

_user = requires(Role.USER)


class HoldingModel(BaseModel):
    holding_id: uuid.UUID
    atom_id: str
    source_uri: str
    source_type: str
    visibility: str
    created_at: datetime


class HoldingsPage(BaseModel):
    items: list[HoldingModel]
    next_cursor: str | None


@router.get("", response_model=HoldingsPage, summary="The tenant's holdings, newest first")
def list_holdings(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=500), ASCII_INTEGER] = 50,
    cursor: Annotated[
        str | None, Query(max_length=4096, description="`next_cursor` of the previous page")
    ] = None,
    caller: Caller = Depends(_user),  # noqa: B008
) -> HoldingsPage:
    """One page of holdings; pass `next_cursor` back as `cursor` for the next (400 when the
    cursor was altered or issued for another listing or tenant)."""
    page = holdings_page(platform_of(request), caller.tenant_id, limit, cursor)
    return HoldingsPage(
        items=[HoldingModel.model_validate(item) for item in page.items],
        next_cursor=page.next_cursor,
    )


@router.delete(
    "/{holding_id}",
    status_code=204,
    response_class=Response,
    summary="Release a holding",
)
def release_holding(
    request: Request,
    holding_id: uuid.UUID,
    caller: Caller = Depends(_user),  # noqa: B008
) -> Response:
    """Delete the holding (404 when the tenant has none with this id); `atoms gc` later
    collects the atoms nothing references any more."""
    delete_holding(platform_of(request), caller.tenant_id, holding_id)
    return Response(status_code=204)
