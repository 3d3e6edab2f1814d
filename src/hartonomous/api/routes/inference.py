"""`/v1/inference`: submit an inference, read its status, rate it (docs/inference.md), role
`user` (docs/security.md)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from hartonomous.api.auth import Caller, platform_of, requires
from hartonomous.api.fields import WholeNumber
from hartonomous.inference.tasks import InferenceTask
from hartonomous.security.roles import Role
from hartonomous.services import inference as inference_service

router = APIRouter(prefix="/v1/inference", tags=["inference"])

_user = requires(Role.USER)
Status = Literal["pending", "in_progress", "completed", "failed"]
_HEX = r"^[0-9a-f]{64}$"


class InferenceBody(BaseModel):
    """A request: the task, its model (onnx_run) and input (forms: docs/inference.md)."""

    model_config = ConfigDict(extra="forbid")

    task: InferenceTask
    model: StrictStr | None = Field(None, pattern=_HEX, description="Model atom id (onnx_run)")
    input: dict[str, Any] = Field(
        default_factory=dict,
        description='The task\'s input, e.g. {"text": "…", "k": 5}; a tensor as '
        '{"npy_base64": …}, {"atom_id": …} or {"dtype", "shape", "data"}',
    )
    attributes: dict[str, StrictStr] = Field(
        default_factory=dict, description="Billing multiplier dimensions (docs/billing.md)"
    )
    correlation_id: StrictStr | None = Field(None, min_length=1, max_length=128)


class InferenceAccepted(BaseModel):
    """The request's id; follow it at ``status_url`` (also the Location header). A cache hit
    is ``completed`` already."""

    inference_id: uuid.UUID
    status: Status
    cache_hit: bool
    cached_from: uuid.UUID | None
    status_url: str


class InferenceStepModel(BaseModel):
    step_number: int
    operation: str
    duration_ms: float
    index_used: str | None
    rows_examined: int | None
    rows_returned: int | None
    cache_used: bool
    detail: dict[str, Any]


class InferenceModel(BaseModel):
    """`services.inference.InferenceView` over HTTP (read from it by attribute)."""

    inference_id: uuid.UUID
    task: InferenceTask
    status: Status
    model: str | None
    input: dict[str, Any]
    attributes: dict[str, Any]
    cache_hit: bool
    cached_from: uuid.UUID | None
    output: dict[str, Any] | None
    confidence: float | None
    error: str | None
    usage_units: Decimal | None = Field(description="Billed units, a decimal string (exact)")
    attempts: int
    requested_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: float | None
    stream_id: uuid.UUID | None
    rating: int | None
    feedback: str | None
    rated_at: datetime | None
    steps: list[InferenceStepModel]


class FeedbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rating: WholeNumber = Field(ge=0, le=5, description="0 (worst) to 5 (best)")
    text: StrictStr | None = Field(
        None, max_length=inference_service.MAX_FEEDBACK_CHARACTERS, description="Feedback text"
    )


def _model(view: inference_service.InferenceView) -> InferenceModel:
    return InferenceModel.model_validate(view, from_attributes=True)


@router.post("", status_code=202, response_model=InferenceAccepted, summary="Submit an inference")
async def submit_inference(
    body: InferenceBody,
    request: Request,
    response: Response,
    caller: Caller = Depends(_user),  # noqa: B008
) -> InferenceAccepted:
    """Check and queue the request for the job worker; 202 with its id. An identical earlier
    completed request of the tenant answers at once (``cache_hit``). Bad input (an unknown
    field, a model or atom the tenant does not hold, inputs over the limit) → 400 naming it,
    and nothing is stored."""
    submission = inference_service.Submission(
        tenant_id=caller.tenant_id,
        task=body.task,
        input=body.input,
        model=body.model,
        principal_id=caller.principal_id,
        attributes=body.attributes,
        correlation_id=body.correlation_id,
    )
    submitted = await run_in_threadpool(inference_service.submit, platform_of(request), submission)
    location = f"/v1/inference/{submitted.inference_id}"
    response.headers["Location"] = location
    return InferenceAccepted(
        inference_id=submitted.inference_id,
        status=submitted.status.value,
        cache_hit=submitted.cache_hit,
        cached_from=submitted.cached_from,
        status_url=location,
    )


@router.get("/{inference_id}", response_model=InferenceModel, summary="An inference's status")
def get_inference(
    inference_id: uuid.UUID,
    request: Request,
    caller: Caller = Depends(_user),  # noqa: B008
) -> InferenceModel:
    """Status, output, steps, units and rating; another tenant's inference is 404."""
    return _model(inference_service.get(platform_of(request), caller.tenant_id, inference_id))


@router.post(
    "/{inference_id}/feedback",
    response_model=InferenceModel,
    summary="Rate a completed inference",
    responses={409: {"description": "The inference has not completed (nothing to rate)"}},
)
def give_feedback(
    inference_id: uuid.UUID,
    body: FeedbackBody,
    request: Request,
    caller: Caller = Depends(_user),  # noqa: B008
) -> InferenceModel:
    """A 0-5 rating and optional text; a later rating replaces it. 409 unless completed."""
    view = inference_service.feedback(
        platform_of(request), caller.tenant_id, inference_id, body.rating, body.text
    )
    return _model(view)
