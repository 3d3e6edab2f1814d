"""OneHopRoute: a sync endpoint and its response validation share one worker thread; what the
client gets (answers, errors, OpenAPI) is what FastAPI's own route gives."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import pytest
import starlette.requests
from fastapi import APIRouter, FastAPI
from fastapi.exceptions import ResponseValidationError
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient
from pydantic import BaseModel, field_validator

from hartonomous.api.middleware import RequestHygieneMiddleware
from hartonomous.api.routing import OneHopRoute, api_router

_threads: dict[str, int] = {}
_tenant: ContextVar[str] = ContextVar("tenant", default="none")


@dataclass
class Found:
    """What a service returns: a dataclass, validated into the response model."""

    name: str
    count: int


class FoundModel(BaseModel):
    name: str
    count: int

    @field_validator("name")
    @classmethod
    def _note_thread(cls, value: str) -> str:
        _threads["validation"] = threading.get_ident()
        return value


def _routes(router: APIRouter) -> APIRouter:
    @router.get("/found/{name}", response_model=FoundModel)
    def found(name: str, count: int = 1) -> Found:
        """One thing found."""
        _threads["endpoint"] = threading.get_ident()
        return Found(name=f"{name}@{_tenant.get()}", count=count)

    @router.get("/broken", response_model=FoundModel)
    def broken() -> dict[str, object]:
        return {"name": "no count"}

    @router.get("/many", response_model=list[FoundModel])
    def many() -> list[Found]:
        return [Found("a", 1), Found("b", 2)]

    @router.get("/streamed")
    def streamed() -> StreamingResponse:
        def chunks() -> Iterator[bytes]:
            yield b"one,"
            yield b"two"

        return StreamingResponse(chunks(), media_type="text/plain")

    @router.get("/async", response_model=FoundModel)
    async def asynchronous() -> Found:
        _threads["async"] = threading.get_ident()
        return Found("async", 3)

    return router


def _app(router: APIRouter) -> FastAPI:
    app = FastAPI()

    @app.middleware("http")
    async def bind_tenant(request, call_next):  # type: ignore[no-untyped-def]
        # As api/auth.py binds the caller's tenant in the request's task.
        _tenant.set("acme")
        _threads["loop"] = threading.get_ident()
        return await call_next(request)

    app.include_router(_routes(router))
    return app


@pytest.fixture(scope="module")
def one_hop() -> TestClient:
    return TestClient(_app(api_router()))


@pytest.fixture(scope="module")
def fastapi_own() -> TestClient:
    return TestClient(_app(APIRouter()))


def test_the_endpoint_and_its_response_validation_run_in_one_worker_thread(
    one_hop: TestClient, fastapi_own: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    hops: list[str] = []
    run_sync = anyio.to_thread.run_sync

    async def counted(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        hops.append(getattr(function, "__name__", "?"))
        return await run_sync(function, *args, **kwargs)

    # Starlette's run_in_threadpool (FastAPI's and ours) hands work to threads through this.
    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
    _threads.clear()
    assert one_hop.get("/found/x", params={"count": 4}).json() == {"name": "x@acme", "count": 4}
    assert len(hops) == 1
    assert _threads["validation"] == _threads["endpoint"] != _threads["loop"]
    # FastAPI's own route validates the answer in a second hop.
    hops.clear()
    assert fastapi_own.get("/found/x").json() == {"name": "x@acme", "count": 1}
    assert len(hops) == 2


def test_answers_errors_and_the_openapi_document_are_fastapi_s_own(
    one_hop: TestClient, fastapi_own: TestClient
) -> None:
    for client in (one_hop, fastapi_own):
        assert client.get("/many").json() == [{"name": "a", "count": 1}, {"name": "b", "count": 2}]
        assert client.get("/streamed").text == "one,two"
        assert client.get("/async").json() == {"name": "async", "count": 3}
        assert client.get("/found/x", params={"count": "many"}).status_code == 422
        with pytest.raises(ResponseValidationError, match="count"):
            client.get("/broken")
    assert one_hop.app.openapi() == fastapi_own.app.openapi()  # type: ignore[attr-defined]


def test_only_plain_sync_functions_are_wrapped() -> None:
    router = _routes(api_router())
    wrapped = {route.name: route.endpoint for route in router.routes}  # type: ignore[attr-defined]
    assert all(isinstance(route, OneHopRoute) for route in router.routes)
    assert wrapped["found"].__wrapped__.__name__ == "found"
    assert not hasattr(wrapped["asynchronous"], "__wrapped__")


def test_a_json_body_is_parsed_once_by_the_hygiene_middleware(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The document RequestHygieneMiddleware parsed (to refuse repeated keys) is the body the
    route reads: Starlette's json.loads, which FastAPI's body reading calls, is not called."""
    parses: list[bytes] = []
    loads = json.loads

    def counted(text: Any, **kwargs: Any) -> Any:
        parses.append(text)
        return loads(text, **kwargs)

    monkeypatch.setattr(starlette.requests.json, "loads", counted)
    router = api_router()

    @router.post("/things")
    def create(thing: FoundModel) -> FoundModel:
        return thing

    checked = FastAPI()
    checked.include_router(router)
    checked.add_middleware(RequestHygieneMiddleware)
    unchecked = FastAPI()
    unchecked.include_router(router)
    sent = {"name": "a", "count": 2}
    answer = TestClient(checked).post("/things", json=sent)
    assert parses == []  # (json is the module the client reads the answer with, too)
    assert answer.json() == sent
    # Without the middleware FastAPI parses the body itself, through the spied function.
    parses.clear()
    answer = TestClient(unchecked).post("/things", json=sent)
    assert parses == [b'{"name":"a","count":2}']
    assert answer.json() == sent
    # Malformed JSON is still FastAPI's to name (the middleware parsed nothing).
    answer = TestClient(checked).post(
        "/things", content=b'{"name": ', headers={"content-type": "application/json"}
    )
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["type"] == "json_invalid"
