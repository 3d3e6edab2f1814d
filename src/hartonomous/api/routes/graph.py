"""`/v1/graph` (admin): SQL graph and Neo4j projection status, repair and replay."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Body, Depends, Request
from pydantic import Field

from hartonomous.api.auth import Caller, platform_of, requires
from hartonomous.api.fields import Timestamp, WholeNumber
from hartonomous.api.routing import api_router
from hartonomous.request_bodies import RequestBody
from hartonomous.security.roles import Role
from hartonomous.services.graph import (
    GraphRepair,
    GraphReplay,
    GraphStatus,
    graph_repair,
    graph_replay,
    graph_status,
)

router = api_router(prefix="/v1/graph", tags=["operations"])

Admin = Annotated[Caller, Depends(requires(Role.ADMIN))]


class RepairRequest(RequestBody):
    batch_size: WholeNumber = Field(
        default=1000, ge=1, le=100_000, description="Source rows a batch"
    )


class ReplayRequest(RequestBody):
    """``since``: only rows changed at or after this time (with a UTC offset); without it,
    everything is re-projected and Neo4j loses what the SQL graph no longer has."""

    since: Timestamp | None = None
    batch_size: WholeNumber = Field(default=1000, ge=1, le=100_000)


@router.get("/status")
def status(request: Request, caller: Admin) -> GraphStatus:
    """Graph sizes, projection lag (Neo4j on), pending events, ledger rows, sync counters."""
    return graph_status(platform_of(request))


@router.post("/repair")
def repair(
    request: Request,
    caller: Admin,
    body: Annotated[RepairRequest | None, Body()] = None,
) -> GraphRepair:
    """Rebuild graph_nodes / graph_edges from atoms, holdings, relations, models and jobs."""
    return graph_repair(platform_of(request), (body or RepairRequest()).batch_size)


@router.post("/replay")
def replay(
    request: Request,
    caller: Admin,
    body: Annotated[ReplayRequest | None, Body()] = None,
) -> GraphReplay:
    """Re-project the SQL graph into Neo4j (400 ``projection-not-configured`` without
    `[neo4j] uri`, 503 when Neo4j cannot be reached)."""
    asked = body or ReplayRequest()
    since: datetime | None = asked.since
    return graph_replay(platform_of(request), since=since, batch_size=asked.batch_size)
