"""`GET /v1/broker/status` (admin): the queue, its claims and the change capture feeding it."""

from __future__ import annotations

from fastapi import Depends, Request

from hartonomous.api.auth import Caller, platform_of, requires
from hartonomous.api.routing import api_router
from hartonomous.security.roles import Role
from hartonomous.services.broker import BrokerStatus, broker_status

router = api_router(prefix="/v1/broker", tags=["operations"])


@router.get("/status")
def status(
    request: Request,
    caller: Caller = Depends(requires(Role.ADMIN)),  # noqa: B008
) -> BrokerStatus:
    """Depth, oldest age, in-flight and orphaned claims, throughput, dead letters, long
    conversations and change-capture lag of the configured queue (platform-wide)."""
    return broker_status(platform_of(request))
