"""Dead letters (admin): list with reason, attempts and error; one letter's traceback and
body; replay of the selected letters with an outcome each; purge behind a confirmation."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from hartonomous.errors import UsageError
from hartonomous.services.dead_letters import (
    list_dead_letters,
    parse_duration,
    purge_dead_letters,
    replay_each,
    show_dead_letter,
)
from hartonomous.ui.access import ADMIN, Viewer, checked_form, flashes_of, platform_of
from hartonomous.ui.rendering import render

router = APIRouter(prefix="/dead-letters")
_PAGE = 50


async def _listing(
    request: Request, cursor: str | None, replayed: bool, **extra: object
) -> Response:
    page = await run_in_threadpool(
        list_dead_letters,
        platform_of(request),
        limit=_PAGE,
        include_replayed=replayed,
        cursor=cursor,
    )
    return render(
        request,
        "deadletters.html",
        {"page": page, "replayed": replayed, "errors": {}, "outcomes": None, **extra},
        status_code=400 if extra.get("errors") else 200,
    )


@router.get("")
async def letters(
    request: Request,
    *,
    seen: Viewer = ADMIN,
    cursor: Annotated[str | None, Query(max_length=4096)] = None,
    replayed: bool = False,
    outcome: Annotated[str | None, Query(max_length=64)] = None,
    purged: Annotated[int | None, Query(ge=0)] = None,
) -> Response:
    """The listing; ``outcome`` names the flash of a replay just made (shown once), ``purged``
    the count a purge just deleted."""
    extra: dict[str, object] = {}
    if outcome is not None:
        extra["outcomes"] = flashes_of(request).take(seen.session, outcome)
        extra["outcome_gone"] = extra["outcomes"] is None
    if purged is not None:
        extra["purged"] = purged
    return await _listing(request, cursor, replayed, **extra)


@router.get("/{dead_letter_id}")
async def letter(
    request: Request, dead_letter_id: Annotated[int, Path(ge=1)], seen: Viewer = ADMIN
) -> Response:
    shown = await run_in_threadpool(show_dead_letter, platform_of(request), dead_letter_id)
    return render(request, "deadletter.html", {"letter": shown})


@router.post("/replay")
async def replay(request: Request, seen: Viewer = ADMIN) -> Response:
    """Replays each ticked letter; htmx gets the outcome table (400: the error fragment), a
    plain form a 303 to the listing showing the outcomes once (Post/Redirect/Get)."""
    form = await checked_form(request, seen)
    chosen = [str(value) for value in form.getlist("dead_letter_id")]
    if not chosen or not all(value.isdigit() for value in chosen):
        errors = {"dead_letter_id": "Tick at least one dead letter to replay."}
        if request.headers.get("hx-request"):
            return render(request, "replay_outcome.html", {"errors": errors}, status_code=400)
        return await _listing(request, None, False, errors=errors)
    outcomes = await run_in_threadpool(
        replay_each, platform_of(request), [int(value) for value in chosen]
    )
    if request.headers.get("hx-request"):
        return render(request, "replay_outcome.html", {"outcomes": outcomes, "errors": {}})
    flash = flashes_of(request).put(seen.session, outcomes)
    return RedirectResponse(f"/ui/dead-letters?outcome={flash}", status_code=303)


@router.post("/purge")
async def purge(request: Request, seen: Viewer = ADMIN) -> Response:
    """First post: the age checked and a confirmation asked (nothing changed: a reload asks
    again); with ``confirm=yes``: deleted, and a 303 to the listing saying how many."""
    form = await checked_form(request, seen)
    older_than = str(form.get("older_than") or "").strip()
    try:
        age = parse_duration(older_than, "older than")
    except UsageError as exc:
        return await _listing(request, None, False, errors={"older_than": str(exc)})
    if form.get("confirm") != "yes":
        return render(request, "purge_confirm.html", {"older_than": older_than})
    outcome = await run_in_threadpool(purge_dead_letters, platform_of(request), age, confirm=True)
    return RedirectResponse(f"/ui/dead-letters?purged={outcome.purged}", status_code=303)
