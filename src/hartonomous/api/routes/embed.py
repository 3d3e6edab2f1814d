"""`POST /v1/embed`: texts to vectors in the text space (docs/embed.md), role `user`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends
from pydantic import BaseModel, Field, StrictStr

from hartonomous.api.auth import Caller, requires
from hartonomous.api.routing import api_router
from hartonomous.request_bodies import RequestBody
from hartonomous.security.roles import Role
from hartonomous.services import embed as embed_service

router = api_router(prefix="/v1/embed", tags=["embed"])

Text = Annotated[StrictStr, Field(max_length=embed_service.MAX_EMBED_CHARACTERS)]


class EmbedRequest(RequestBody):
    texts: list[Text] = Field(
        min_length=1,
        max_length=embed_service.MAX_EMBED_TEXTS,
        description="Texts to embed, each at most MAX_EMBED_CHARACTERS characters",
    )


class EmbeddedText(BaseModel):
    vector: list[float] | None = Field(description="Unit-length vector; null with `error`")
    error: str | None = Field(description="Why the text has no vector")
    truncated: bool = Field(description="Only the first max_tokens word pieces were read")
    token_count: int = Field(description="The text's word pieces")


class EmbedResponse(BaseModel):
    space: str = Field(description="Embedding space of the vectors")
    dimension: int
    items: list[EmbeddedText] = Field(description="One per text, in order")


@router.post("", response_model=EmbedResponse)
def embed(
    body: EmbedRequest,
    caller: Caller = Depends(requires(Role.USER)),  # noqa: B008
) -> Any:
    """One vector (or the reason there is none) per text, in order."""
    space = embed_service.text_space()
    items = embed_service.embed_texts(body.texts)
    return {"space": space.name, "dimension": space.dimension, "items": items}
