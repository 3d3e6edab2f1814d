"""The dashboard: the figures of ``services.operations``, live over server-sent events.

`GET /ui/dashboard` renders them once; `GET /ui/dashboard/events` is an event stream
(``text/event-stream``) sending event ``figures`` whose data is the figures' HTML fragment
every ``REFRESH_SECONDS``, until the browser leaves or the server begins shutting down. The
key is re-checked before each event: once it may no longer sign in, the event ``signed-out``
ends the stream (the page then reloads, which leads to the sign-in page).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from hartonomous.db.tenant_context import bind_tenant
from hartonomous.errors import HartonomousError, NotAuthenticatedError, UnavailableError
from hartonomous.services.operations import operations_overview
from hartonomous.services.web_sessions import session_caller
from hartonomous.ui.access import ANYONE, Viewer, platform_of
from hartonomous.ui.rendering import render, templates
from hartonomous.ui.stopping import stop_notice

router = APIRouter()
REFRESH_SECONDS = 2.0


def _figures(request: Request, seen: Viewer) -> dict[str, Any]:
    try:
        overview = operations_overview(platform_of(request), seen.tenant_id, operator=seen.is_admin)
    except HartonomousError as exc:  # the page stays up and says why it has no figures
        return {"overview": None, "error": str(exc), "throughput": None}
    throughput = None
    if overview.platform is not None:
        minutes = overview.platform.throughput_last_hour
        # The chart's series (static/ui.js): minute starts in epoch seconds and the counts.
        throughput = {
            "t": [int(m.minute.timestamp()) for m in minutes],
            "completed": [m.completed for m in minutes],
            "dead_lettered": [m.dead_lettered for m in minutes],
        }
    return {"overview": overview, "error": None, "throughput": throughput}


@router.get("/dashboard")
async def dashboard(request: Request, seen: Viewer = ANYONE) -> Response:
    figures = await run_in_threadpool(_figures, request, seen)
    return render(request, "dashboard.html", figures)


@router.get("/dashboard/events")
async def dashboard_events(request: Request, seen: Viewer = ANYONE) -> Response:
    fragment = templates.get_template("dashboard_figures.html")

    async def events() -> AsyncIterator[str]:
        bind_tenant(seen.tenant_id)  # the stream's task, as the dependency's, reads as it
        notice = stop_notice(request)
        while not notice.triggered:
            try:  # a key revoked or disabled meanwhile ends the stream, as it ends the session
                await run_in_threadpool(session_caller, platform_of(request), seen.caller.key_id)
            except NotAuthenticatedError:
                yield "event: signed-out\ndata: \n\n"
                return
            figures = await run_in_threadpool(_figures, request, seen)
            html = fragment.render(root="/ui", viewer=seen, **figures)
            yield "event: figures\n" + "".join(f"data: {line}\n" for line in html.splitlines())
            yield "\n"
            try:
                await notice.first(anyio.sleep(REFRESH_SECONDS))
            except UnavailableError:  # the server is shutting down
                return
            if await request.is_disconnected():
                return

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
