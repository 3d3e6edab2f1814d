"""`/v1/dead-letters` (admin): list, show, replay and purge the broker's dead letters.

Dead letters belong to the platform, not to a tenant (docs/api.md, "Operations").
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Query, Request
from pydantic import BaseModel, Field, model_validator

from hartonomous.api.auth import Caller, platform_of, requires
from hartonomous.api.fields import ASCII_INTEGER, StrictBool
from hartonomous.api.routing import api_router
from hartonomous.errors import UsageError
from hartonomous.request_bodies import RequestBody
from hartonomous.security.roles import Role
from hartonomous.services.dead_letters import (
    DeadLetter,
    DeadLetterSummary,
    ReplaySelection,
    list_dead_letters,
    parse_duration,
    purge_dead_letters,
    replay_dead_letters,
    show_dead_letter,
)

router = api_router(prefix="/v1/dead-letters", tags=["operations"])

DeadLetterId = Annotated[
    int, Path(ge=1, le=2**63 - 1, description="A dead letter's id"), ASCII_INTEGER
]


class DeadLetterPage(BaseModel):
    items: list[DeadLetterSummary]
    next_cursor: str | None


class Replayed(BaseModel):
    replayed: int
    message_ids: list[int] = Field(description="The new broker messages, one per dead letter")


class ReplayRequest(RequestBody):
    """Which pending dead letters to replay: every one (``all``) or those with ``reason``."""

    all: StrictBool = False
    reason: str | None = Field(default=None, min_length=1, max_length=512, pattern=r"^[^\x00]+$")

    @model_validator(mode="after")
    def _one_selection(self) -> ReplayRequest:
        if self.all == (self.reason is not None):
            # Not a ValueError: a rule across members is a 400, not a schema violation (422).
            raise UsageError("give exactly one of all (true) or reason")
        return self


class PurgeRequest(RequestBody):
    """Delete dead letters older than ``older_than`` (``30m``, ``12h``, ``7d``, ``2w``; ``0s``:
    all). ``confirm`` must be true: the deletion cannot be undone (the CLI's ``--yes``)."""

    older_than: str = Field(min_length=2, max_length=32, examples=["7d"])
    confirm: StrictBool = False


class Purged(BaseModel):
    purged: int


Admin = Annotated[Caller, Depends(requires(Role.ADMIN))]


@router.get("")
def list_letters(
    request: Request,
    caller: Admin,
    limit: Annotated[int, Query(ge=1, le=500), ASCII_INTEGER] = 50,
    cursor: Annotated[str | None, Query(max_length=4096)] = None,
    include_replayed: bool = False,
) -> DeadLetterPage:
    """Dead letters newest first; ``next_cursor`` fetches the next page (docs/api.md)."""
    page = list_dead_letters(
        platform_of(request), limit=limit, include_replayed=include_replayed, cursor=cursor
    )
    return DeadLetterPage(items=list(page.items), next_cursor=page.next_cursor)


@router.post("/replay")
def replay_selected(request: Request, caller: Admin, body: ReplayRequest) -> Replayed:
    """Re-enqueue every pending dead letter, or those with a reason, attempts reset."""
    selection = ReplaySelection(reason=body.reason, everything=body.all)
    outcome = replay_dead_letters(platform_of(request), selection)
    return Replayed(replayed=outcome.replayed, message_ids=outcome.message_ids)


@router.post("/purge")
def purge(request: Request, caller: Admin, body: PurgeRequest) -> Purged:
    """Delete old dead letters for good (``confirm: true`` required)."""
    age = parse_duration(body.older_than, "older_than")
    return Purged(purged=purge_dead_letters(platform_of(request), age, confirm=body.confirm).purged)


@router.get("/{dead_letter_id}")
def show(request: Request, caller: Admin, dead_letter_id: DeadLetterId) -> DeadLetter:
    """Everything about one dead letter: reason, exception, traceback, original body."""
    return show_dead_letter(platform_of(request), dead_letter_id)


@router.post("/{dead_letter_id}/replay")
def replay_one(request: Request, caller: Admin, dead_letter_id: DeadLetterId) -> Replayed:
    """Re-enqueue one dead letter (replayed or not) with attempts reset."""
    outcome = replay_dead_letters(
        platform_of(request), ReplaySelection(dead_letter_id=dead_letter_id)
    )
    return Replayed(replayed=outcome.replayed, message_ids=outcome.message_ids)
