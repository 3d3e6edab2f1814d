"""`POST /v1/usage-events`: usage from other services as CloudEvents 1.0 in structured JSON
mode, one (``application/cloudevents+json``) or a batch (``application/cloudevents-batch+json``),
billed to the caller's tenant through the broker and the sync worker (docs/api.md, "Usage
events").
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from hartonomous.api.auth import Caller, platform_of, requires
from hartonomous.api.middleware import UnsupportedMediaTypeError, json_invalid
from hartonomous.api.routing import api_router
from hartonomous.errors import UsageError
from hartonomous.json_types import exact_loads
from hartonomous.security.roles import Role
from hartonomous.services.usage_events import UsageEventOutcome, submit_usage_events

router = api_router(prefix="/v1", tags=["usage-events"])

SINGLE = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"


class SingleUsageEventRejectedError(UsageError):
    """The one event sent cannot be billed (the detail names why); nothing was written."""

    code = "usage-event-rejected"


class UsageEventAnswer(BaseModel):
    id: str | None = Field(description="The event's id as sent (null when absent)")
    source: str | None
    status: Literal["accepted", "duplicate", "rejected"]
    reason: str | None = Field(description="Why rejected (or what it duplicates)")


class UsageEventsAnswer(BaseModel):
    accepted: int
    duplicate: int
    rejected: int
    results: list[UsageEventAnswer] = Field(description="One per event, in the order sent")


_EVENT_SCHEMA = {
    "type": "object",
    "required": ["specversion", "id", "source", "type", "time", "data"],
    "properties": {
        "specversion": {"type": "string", "enum": ["1.0"]},
        "id": {"type": "string", "minLength": 1, "maxLength": 256},
        "source": {"type": "string", "minLength": 1, "maxLength": 512},
        "type": {"type": "string", "minLength": 1, "maxLength": 128},
        "time": {"type": "string", "format": "date-time"},
        "subject": {"type": "string"},
        "datacontenttype": {"type": "string"},
        "data": {
            "type": "object",
            "required": ["units"],
            "properties": {"units": {"type": ["number", "string"]}},
        },
    },
}
_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            SINGLE: {"schema": _EVENT_SCHEMA},
            # Any item is taken: each is checked on its own and answered in `results` (an item
            # that is not a valid event is `rejected` there, the rest of the batch goes on).
            BATCH: {
                "schema": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"description": f"a CloudEvent, as the {SINGLE} body"},
                }
            },
        },
    }
}


@router.post(
    "/usage-events",
    response_model=UsageEventsAnswer,
    openapi_extra=_BODY,
    responses={
        202: {"model": UsageEventsAnswer, "description": "The one event was accepted"},
        415: {"description": "Not a CloudEvents JSON body (`unsupported-media-type`)"},
    },
    summary="Report usage from another service (CloudEvents)",
)
async def usage_events(
    request: Request,
    response: Response,
    caller: Annotated[Caller, Depends(requires(Role.USER))],
) -> UsageEventsAnswer:
    """Bill each event to the caller's tenant (its `type` the operation, `data.units` the
    usage, `time` the period). A batch answers 200 with a result per event; a single event
    202 when accepted, 200 when a duplicate, 400 (problem) when rejected. Wrong content type
    → 415; a batch over `[billing] usage_event_batch_limit` → 413; nothing is written for a
    rejected event."""
    media = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if media not in (SINGLE, BATCH):
        raise UnsupportedMediaTypeError(
            f"content type {media or 'none'!r} is not accepted: send {SINGLE} (one event) or "
            f"{BATCH} (a JSON array of events)"
        )
    try:
        body = exact_loads(await request.body())
    except json.JSONDecodeError as exc:
        raise json_invalid(exc.msg, exc.pos) from None  # worded as on every other route
    except (UnicodeDecodeError, RecursionError) as exc:
        raise UsageError(f"the body is not valid JSON: {exc}") from None
    if media == BATCH and not isinstance(body, list):
        raise UsageError(f"a {BATCH} body must be a JSON array of CloudEvents")
    if media == SINGLE and not isinstance(body, dict):
        raise UsageError(f"a {SINGLE} body must be one CloudEvent (a JSON object)")
    events = body if isinstance(body, list) else [body]
    outcome: UsageEventOutcome = await run_in_threadpool(
        submit_usage_events, platform_of(request), caller.tenant_id, caller.principal_id, events
    )
    if media == SINGLE:
        only = outcome.results[0]
        if only.status == "rejected":
            raise SingleUsageEventRejectedError(f"usage event rejected: {only.reason}")
        response.status_code = 202 if only.status == "accepted" else 200
    return UsageEventsAnswer(
        accepted=outcome.count("accepted"),
        duplicate=outcome.count("duplicate"),
        rejected=outcome.count("rejected"),
        results=[
            UsageEventAnswer(id=r.id, source=r.source, status=r.status, reason=r.reason)
            for r in outcome.results
        ],
    )
