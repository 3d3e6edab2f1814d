"""`GET /v1/models`, `/v1/models/{model_id}`, `/v1/models/{model_id}/tensors`: the ingested
models the caller's tenant holds (`services.models`), role `data-scientist`.

Listings page with signed cursors (docs/api.md, "Pagination"); another tenant's model is 404.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Query, Request
from pydantic import BaseModel, Field, JsonValue

from hartonomous.api.auth import Caller, platform_of, requires
from hartonomous.api.fields import ASCII_INTEGER, AtomId
from hartonomous.api.routing import api_router
from hartonomous.security.roles import Role
from hartonomous.services import models as model_service

router = api_router(prefix="/v1/models", tags=["models"])

ModelId = AtomId
Limit = Annotated[int, Query(ge=1, le=500, description="Items per page"), ASCII_INTEGER]
Cursor = Annotated[
    str | None, Query(max_length=4096, description="`next_cursor` of the previous page")
]
_needs = Depends(requires(Role.DATA_SCIENTIST))


class ModelSummary(BaseModel):
    model_id: str = Field(description="The model file's atom id (64 hex characters)")
    format: str = Field(description="safetensors, gguf or onnx")
    architecture: str | None
    parameter_count: int
    tensor_count: int
    dtypes: dict[str, int] = Field(description="Tensors per dtype")


class ModelDetails(ModelSummary):
    metadata: dict[str, JsonValue] = Field(description="What the file says about itself")


class Tensor(BaseModel):
    name: str
    dtype: str
    shape: list[int]
    parameter_count: int
    atom_id: str | None = Field(description="Atom of its bytes; null: not one contiguous span")
    byte_offset: int | None = Field(description="Offset in the model file (bytes)")
    byte_length: int


class ModelPage(BaseModel):
    items: list[ModelSummary]
    next_cursor: str | None = Field(description="Cursor of the next page; null: the last")


class TensorPage(BaseModel):
    items: list[Tensor]
    next_cursor: str | None = Field(description="Cursor of the next page; null: the last")


@router.get("", response_model=ModelPage)
def list_models(
    request: Request, caller: Caller = _needs, limit: Limit = 50, cursor: Cursor = None
) -> Any:
    """Models whose file the tenant holds, oldest first."""
    return model_service.list_models(
        platform_of(request), caller.tenant_id, limit=limit, cursor=cursor
    )


@router.get("/{model_id}", response_model=ModelDetails)
def show_model(model_id: ModelId, request: Request, caller: Caller = _needs) -> Any:
    """A model's format, architecture, parameters, dtypes and metadata."""
    digest = bytes.fromhex(model_id)
    return model_service.show_model(platform_of(request), caller.tenant_id, digest, tensors=0)


@router.get("/{model_id}/tensors", response_model=TensorPage)
def list_tensors(
    model_id: ModelId,
    request: Request,
    caller: Caller = _needs,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Any:
    """The model's tensors in file order."""
    digest = bytes.fromhex(model_id)
    return model_service.list_tensors(
        platform_of(request), caller.tenant_id, digest, limit=limit, cursor=cursor
    )
