"""`GET /v1/lineage/{id}?direction=up|down&depth=N`: the provenance graph around an atom,
model or inference of the caller's tenant (`services.lineage`, docs/provenance.md,
"Lineage"), role `user`. Another tenant's inference, or an atom the tenant holds nothing of,
is 404."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Depends, Path, Query, Request
from pydantic import BaseModel, Field, JsonValue

from hartonomous.api.auth import Caller, platform_of, requires
from hartonomous.api.fields import ASCII_INTEGER
from hartonomous.api.routing import api_router
from hartonomous.security.roles import Role
from hartonomous.services import lineage as lineage_service

router = api_router(prefix="/v1/lineage", tags=["provenance"])
_needs = Depends(requires(Role.USER))

Identifier = Annotated[
    str,
    Path(
        pattern=r"^([0-9a-fA-F]{64}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$",
        description="An atom or model id (64 hex characters) or an inference id (a UUID)",
    ),
]


class LineageNode(BaseModel):
    node_id: str = Field(description="Graph id, e.g. `atom:<hex>`, `inference:<tenant>:<uuid>`")
    label: str = Field(description="Atom, Model, Tensor, Inference, IngestionJob, ...")
    depth: int = Field(description="Fewest steps from the start (0: the start)")
    properties: dict[str, JsonValue]


class LineageEdge(BaseModel):
    edge_id: str
    relationship: str = Field(description="PRODUCED, USED_INPUT, USED_MODEL, CONTAINS, ...")
    from_node_id: str
    to_node_id: str
    properties: dict[str, JsonValue]


class Lineage(BaseModel):
    start: str = Field(description="The graph id of the node the walk started from")
    direction: Literal["up", "down"]
    depth: int
    nodes: list[LineageNode]
    edges: list[LineageEdge]
    truncated: bool = Field(description="More nodes are reachable than one answer holds")


@router.get("/{identifier}", response_model=Lineage)
def lineage(
    identifier: Identifier,
    request: Request,
    caller: Caller = _needs,
    direction: Annotated[
        Literal["up", "down"],
        Query(description="up: where it came from; down: what came from it"),
    ] = "up",
    depth: Annotated[
        int, Query(ge=1, le=lineage_service.MAX_DEPTH, description="Steps to walk"), ASCII_INTEGER
    ] = lineage_service.DEFAULT_DEPTH,
) -> Any:
    """Nodes and edges within `depth` steps up or down from an atom, model or inference."""
    return lineage_service.lineage(
        platform_of(request), caller.tenant_id, identifier, direction, depth
    )
