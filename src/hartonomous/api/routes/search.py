"""`POST /v1/search` (JSON) and `POST /v1/search/by-example` (one uploaded file), docs/api.md.

Both search what the caller's tenant may see (`services.search`; modes and filters:
docs/search.md) and need the `user` role.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)
from starlette.concurrency import run_in_threadpool

from hartonomous.api.auth import Caller, platform_of, requires
from hartonomous.api.example_upload import Upload, received_upload
from hartonomous.api.fields import ASCII_INTEGER, Timestamp, integral_number
from hartonomous.api.routing import api_router
from hartonomous.db.tables.atoms import FILE_MODALITIES, SOURCE_TYPES
from hartonomous.errors import UsageError
from hartonomous.request_bodies import RequestBody
from hartonomous.search.fusion import Signal
from hartonomous.security.roles import Role
from hartonomous.services import Platform
from hartonomous.services import search as search_service

router = api_router(prefix="/v1/search", tags=["search"])

# The bounds sit beside StrictInt, inside the validator: on `WholeNumber` itself pydantic can
# only keep them as unknown keys (`ge`, `le`), and the OpenAPI schema showed no bounds at all.
K = Annotated[
    StrictInt,
    Field(ge=1, le=search_service.MAX_K, description="Results wanted"),
    BeforeValidator(integral_number),
]


class SearchFilters(RequestBody):
    """Only atoms from files of this modality / source type, held in [since, until)."""

    # The schema names the accepted values, so a client (and schemathesis) knows them.
    modality: StrictStr | None = Field(
        None, description="Modality of the file", json_schema_extra={"enum": [*FILE_MODALITIES]}
    )
    source_type: StrictStr | None = Field(
        None, description="Source type", json_schema_extra={"enum": [*SOURCE_TYPES]}
    )
    since: Timestamp | None = Field(None, description="Held at or after (RFC 3339)")
    until: Timestamp | None = Field(None, description="Held before (RFC 3339)")

    @field_validator("modality")
    @classmethod
    def _known_modality(cls, value: str | None) -> str | None:
        return _known(value, FILE_MODALITIES)

    @field_validator("source_type")
    @classmethod
    def _known_source_type(cls, value: str | None) -> str | None:
        return _known(value, SOURCE_TYPES)

    @model_validator(mode="after")
    def _since_before_until(self) -> SearchFilters:
        filters = self.as_filters()
        if filters.held_since and filters.held_until and filters.held_since >= filters.held_until:
            # Not a ValueError: a rule across members is a 400, not a schema violation (422).
            raise UsageError("filters: since must be earlier than until")
        return self

    def as_filters(self) -> search_service.Filters:
        return search_service.search_filters(
            source_modality=self.modality,
            source_type=self.source_type,
            held_since=self.since,
            held_until=self.until,
        )


class SearchRequest(RequestBody):
    """A text query."""

    query: StrictStr = Field(
        min_length=1,
        max_length=search_service.MAX_QUERY_CHARACTERS,
        description="Text to search for (characters), not only white space",
        # What _searchable refuses, said in the schema: `\S` in Python's re (which JSON Schema
        # validators in Python use) is what str.strip() keeps.
        json_schema_extra={"pattern": r"\S"},
    )
    k: K = 10
    mode: search_service.SearchMode = Field(
        "hybrid", description="hybrid (meaning and words, fused), semantic or lexical"
    )
    filters: SearchFilters = Field(default_factory=SearchFilters)

    @field_validator("query")
    @classmethod
    def _searchable(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the query is empty")
        search_service.check_search(search_service.Query(text=value), 1, "hybrid", None)
        return value


class ExampleSearchOptions(SearchFilters):
    """The text fields of a search by example (multipart form fields beside `file`)."""

    k: Annotated[
        int, Field(ge=1, le=search_service.MAX_K, description="Results wanted"), ASCII_INTEGER
    ] = 10
    mode: Literal["semantic", "hybrid"] = Field(
        "semantic", description="An example has no words: hybrid is its semantic part"
    )


class SearchHit(BaseModel):
    atom_id: str = Field(description="The atom's id (64 hex characters)")
    score: float | None = Field(description="Cosine similarity to the query; null: no vector")
    text: str | None
    source: str = Field(description="URI of the holding the atom was found in")
    modality: str = Field(description="Modality of the file the atom came from")
    source_type: str
    visibility: str
    signals: dict[Signal, int] = Field(description="Rank (from 1) in each signal that found it")
    verbatim: bool = Field(description="The atom's whole text is the query")


class SearchResults(BaseModel):
    mode: search_service.SearchMode
    space: str = Field(description="Embedding space searched")
    method: str = Field(description="How the vector part ran: exact, hnsw or none")
    hits: list[SearchHit] = Field(description="Best first")
    query_truncated: bool = Field(description="Only the first max_tokens word pieces were read")
    query_tokens: int
    max_tokens: int
    notes: list[str] = Field(description="How the query was answered, for the reader")
    vectors_examined: int | None = Field(
        description="Stored vectors weighed against the query (exact scan: the visible ones; "
        "hnsw: the candidate list, a lower bound); null without a vector search"
    )
    examined_exactly: bool = Field(description="Whether vectors_examined is the exact number")


@router.post("", response_model=SearchResults)
def search(
    body: SearchRequest,
    request: Request,
    caller: Caller = Depends(requires(Role.USER)),  # noqa: B008
) -> Any:
    """The `k` best atoms for a text query, best first."""
    return search_service.search(
        platform_of(request),
        caller.tenant_id,
        search_service.Query(text=body.query),
        body.k,
        mode=body.mode,
        filters=body.filters.as_filters(),
    )


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    # A form field is absent or text: there is no null to send (an optional field is omitted).
    branches = [branch for branch in schema.get("anyOf", ()) if branch.get("type") != "null"]
    if len(branches) != 1:
        return schema
    rest = {key: value for key, value in schema.items() if key not in ("anyOf", "default")}
    return {**branches[0], **rest}


_EXAMPLE_FIELDS = frozenset(ExampleSearchOptions.model_fields)
_EXAMPLE_BODY = {
    "type": "object",
    "required": ["file"],
    "additionalProperties": False,  # another form field is refused (422), as in JSON bodies
    "properties": {
        "file": {"type": "string", "format": "binary", "description": "An image or a sound"},
        **{
            name: _without_null(schema)
            for name, schema in ExampleSearchOptions.model_json_schema()["properties"].items()
        },
    },
}


@router.post(
    "/by-example",
    response_model=SearchResults,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": _EXAMPLE_BODY}},
        }
    },
)
async def search_by_example(
    request: Request,
    caller: Caller = Depends(requires(Role.USER)),  # noqa: B008
) -> Any:
    """The `k` atoms nearest an uploaded image or sound (multipart field `file`, at most
    MAX_EXAMPLE_BYTES for the whole body: 413 over it), with the text fields' options."""
    platform = platform_of(request)
    async with received_upload(
        request,
        platform.settings.data_dir,
        file_field="file",
        text_fields=_EXAMPLE_FIELDS,
        max_bytes=search_service.MAX_EXAMPLE_BYTES,
    ) as upload:
        try:
            options = ExampleSearchOptions.model_validate(upload.fields)
        except ValidationError as exc:
            raise RequestValidationError(
                [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
            ) from None
        return await run_in_threadpool(_by_example, platform, caller.tenant_id, upload, options)


def _by_example(
    platform: Platform, tenant_id: str, upload: Upload, options: ExampleSearchOptions
) -> search_service.SearchResult:
    example = search_service.example_from_file(upload.path, upload.filename)
    return search_service.search(
        platform,
        tenant_id,
        search_service.Query(like=example),
        options.k,
        mode=options.mode,
        filters=options.as_filters(),
    )


def _known(value: str | None, known: tuple[str, ...]) -> str | None:
    # A filter naming nothing would silently answer no results (values are case-sensitive).
    if value is not None and value not in known:
        raise ValueError(f"unknown value {value!r} (known: {', '.join(known)})")
    return value
