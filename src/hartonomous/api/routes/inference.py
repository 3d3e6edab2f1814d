"""`/v1/inference`: submit an inference (JSON, or multipart with `.npy` tensor files), read
its status, rate it (docs/inference.md), role `user` (docs/security.md)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from fastapi import Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, StrictStr, ValidationError

from hartonomous.api.auth import Caller, platform_of, requires
from hartonomous.api.fields import WholeNumber
from hartonomous.api.middleware import MalformedJsonError, check_json_text
from hartonomous.api.routing import api_router
from hartonomous.api.uploads import FILES_FIELD, multipart_body, receive_files
from hartonomous.errors import UsageError
from hartonomous.inference.tasks import InferenceTask
from hartonomous.ingest.uploads import UploadSpool
from hartonomous.request_bodies import RequestBody
from hartonomous.security.roles import Role
from hartonomous.services import inference as inference_service

router = api_router(prefix="/v1/inference", tags=["inference"])

REQUEST_FIELD = "request"
"""The multipart text field holding the request's JSON (`POST /v1/inference/upload`)."""
_REQUEST_BYTES = 1 << 20  # as a JSON body may be (docs/api.md)
_NPY_SUFFIX = ".npy"

_user = requires(Role.USER)
Status = Literal["pending", "in_progress", "completed", "failed"]
_HEX = r"^[0-9a-f]{64}$"


class InferenceBody(RequestBody):
    """A request: the task, its model (onnx_run) and input (forms: docs/inference.md)."""

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
    # The service's dataclass, as the explain route answers it: one step shape in the schema.
    steps: list[inference_service.InferenceStep]


class FeedbackBody(RequestBody):
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
    submitted = await run_in_threadpool(
        inference_service.submit, platform_of(request), _submission(body, caller)
    )
    return _accepted(submitted, response)


def _submission(
    body: InferenceBody, caller: Caller, files: dict[str, bytes] | None = None
) -> inference_service.Submission:
    return inference_service.Submission(
        tenant_id=caller.tenant_id,
        task=body.task,
        input=body.input,
        model=body.model,
        principal_id=caller.principal_id,
        attributes=body.attributes,
        correlation_id=body.correlation_id,
        files=files or {},
    )


def _accepted(submitted: inference_service.Submitted, response: Response) -> InferenceAccepted:
    location = f"/v1/inference/{submitted.inference_id}"
    response.headers["Location"] = location
    return InferenceAccepted(
        inference_id=submitted.inference_id,
        status=submitted.status.value,
        cache_hit=submitted.cache_hit,
        cached_from=submitted.cached_from,
        status_url=location,
    )


@router.post(
    "/upload",
    status_code=202,
    response_model=InferenceAccepted,
    summary="Submit an inference with .npy tensor files",
    openapi_extra=multipart_body(
        {
            REQUEST_FIELD: {
                "type": "string",
                "description": "The request as POST /v1/inference takes it (JSON text)",
            },
            FILES_FIELD: {
                "type": "array",
                "items": {"type": "string", "format": "binary"},
                "description": "One .npy file per input tensor, named <input name>.npy",
            },
        },
        [REQUEST_FIELD, FILES_FIELD],
    ),
)
async def submit_inference_with_files(
    request: Request,
    response: Response,
    caller: Caller = Depends(_user),  # noqa: B008
) -> InferenceAccepted:
    """`onnx_run` with its tensors as `.npy` files (multipart/form-data, RFC 7578): the text
    field ``request`` holds the request as `POST /v1/inference` takes it, and each file part
    named ``files`` is the input tensor its file name names (``x.npy`` → input ``x``). The
    body may hold ``[inference] max_input_bytes`` of files plus the request (413 over it).
    202 as `POST /v1/inference`; bad input (a ``request`` that is not a valid body included)
    400 naming it; nothing is stored then."""
    platform = platform_of(request)
    spool = await run_in_threadpool(UploadSpool, platform.settings.data_dir)
    try:
        texts = await receive_files(
            request,
            spool,
            platform.settings.inference.max_input_bytes + _REQUEST_BYTES,
            {REQUEST_FIELD: _REQUEST_BYTES},
        )
        body = _request_field(texts)
        files = await run_in_threadpool(_tensor_files, spool)
    finally:
        await run_in_threadpool(spool.remove)
    submitted = await run_in_threadpool(
        inference_service.submit, platform, _submission(body, caller, files)
    )
    return _accepted(submitted, response)


def _request_field(texts: dict[str, str]) -> InferenceBody:
    if REQUEST_FIELD not in texts:
        raise UsageError(
            f"send the request (JSON, as POST /v1/inference takes it) as the text field "
            f"{REQUEST_FIELD!r}"
        )
    try:
        # The one strict reading of JSON (NaN, Infinity, repeated keys), as a JSON body gets.
        check_json_text(texts[REQUEST_FIELD])
    except MalformedJsonError as exc:
        raise UsageError(
            f"form field {REQUEST_FIELD!r} is not valid JSON: {exc.reason} "
            f"at character {exc.position}"
        ) from None
    try:
        return InferenceBody.model_validate_json(texts[REQUEST_FIELD])
    except ValidationError as exc:
        # 400, not 422: the form is as its schema says (a text field); its content is not.
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'the request'}: {error['msg']}"
            for error in exc.errors()
        )
        raise UsageError(
            f"form field {REQUEST_FIELD!r} is not a valid request: {problems}"
        ) from None


def _tensor_files(spool: UploadSpool) -> dict[str, bytes]:
    """Each spooled ``<input name>.npy`` file's bytes by input name."""
    files: dict[str, bytes] = {}
    for given, path in spool.files:
        name = given.removesuffix(_NPY_SUFFIX)
        if not given.endswith(_NPY_SUFFIX) or not name:
            raise UsageError(f"file {given!r}: name each tensor file <input name>.npy")
        if name in files:
            raise UsageError(f"input tensor {name!r} is given by two files")
        files[name] = path.read_bytes()
    return files


# `GET /upload` reaches this route too; its refusal is the 405 of `/upload` (api/problems.py).
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
