"""Routers whose sync endpoints cost one worker-thread hop per request, not two.

FastAPI runs a plain ``def`` endpoint in a worker thread, then validates what it returned
against the route's ``response_model`` in a *second* worker-thread hop before it serialises
the answer on the event loop. Each hop is a hand-off between the event loop and a thread
(a queue put, a wake-up, the interpreter lock changing hands twice); measured by
benchmarks/api.py, the second one is pure overhead (docs/api.md, "Measured").

``OneHopRoute`` runs such an endpoint *and* its response validation in one hop: the endpoint
is wrapped in a coroutine that calls both in a worker thread, so FastAPI sees an async
endpoint and re-validates, on the event loop, a value that is already an instance of the
response model (pydantic admits it as it is). What reaches the client is unchanged: the same
validation, the same errors (an invalid answer is handed back unvalidated, and FastAPI raises
its ``ResponseValidationError`` as before), the same JSON. Coroutines and generators (event
streams, streamed bodies) are left as they are.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from hartonomous.api.auth import authorize, required_role
from hartonomous.api.middleware import BODY_REFUSAL, PARSED_BODY, refusal_response

__all__ = ["OneHopRoute", "api_router", "declares_body"]


class OneHopRoute(APIRoute):
    """An ``APIRoute`` running a sync endpoint and its response validation in one hop.

    It also authorizes before it reads the body: a route requiring a role
    (``api.auth.requires``) authenticates the caller (401) and checks the role (403) before
    FastAPI decodes the JSON body (422) and before a body refused by
    ``RequestHygieneMiddleware`` (``BODY_REFUSAL``: 400) is answered, so what a caller without
    the right key learns never depends on the body it sent (docs/api.md, Errors).

    A JSON body that ``RequestHygieneMiddleware`` parsed (``PARSED_BODY``) is handed to FastAPI
    as parsed, so it is not parsed twice (benchmarks/api_overhead.py).

    A route that declares no request body (no body parameter, no ``requestBody`` in its
    ``openapi_extra``) refuses a non-empty one, whatever its media type: a 422 problem naming
    ``body`` (``invalid-request``), after authorization, before the endpoint runs. Without it
    such a route would ignore a body, malformed JSON included, and do the work (docs/api.md,
    "Errors").
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if _plain_function(endpoint):
            endpoint = _in_one_hop(endpoint, self)
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()
        role = required_role(self)  # the dependant is built before the handler is asked for
        own = _own_authorizer(self)
        takes_body = declares_body(self)

        async def authorized_first(request: Request) -> Response:
            if own is not None:
                await own(request)
            elif role is not None:
                await authorize(request, role)
            state = request.scope.get("state", {})
            refused = state.pop(BODY_REFUSAL, None)
            if refused is not None:
                return refusal_response(request, refused)
            if not takes_body and (PARSED_BODY in state or await _has_body(request)):
                raise RequestValidationError([_NO_BODY])
            if PARSED_BODY in state:
                # Starlette's Request.json() answers what it holds as `_json` without parsing
                # the body again; FastAPI reads a JSON body through it.
                request._json = state.pop(PARSED_BODY)
            return await handle(request)

        return authorized_first


Authorizer = Callable[[Request], Coroutine[Any, Any, object]]

_NO_BODY = {
    "type": "extra_forbidden",
    "loc": ("body",),
    "msg": "this operation takes no request body: send none (no Content-Length or 0)",
    "input": None,
}


def declares_body(route: APIRoute) -> bool:
    """Whether ``route`` takes a request body: a body parameter, or one documented in its
    ``openapi_extra`` (uploads read their multipart body themselves)."""
    return route.body_field is not None or "requestBody" in (route.openapi_extra or {})


async def _has_body(request: Request) -> bool:
    """Whether the request carries a non-empty body. ``Content-Length`` says so; a chunked
    body is read until its first non-empty chunk (a route that takes no body reads no more)."""
    length = request.headers.get("content-length")
    if length is not None:
        return not length.isdigit() or int(length) > 0
    if "transfer-encoding" not in request.headers:
        return False
    async for chunk in request.stream():
        if chunk:
            return True
    return False


def _own_authorizer(route: APIRoute) -> Authorizer | None:
    """A route dependency that authorizes in its own way (``/metrics`` during a database
    outage: api/metrics.py) marks itself ``authorizes_first``; it is then run in place of
    ``authorize``."""
    pending = list(route.dependant.dependencies)
    while pending:
        dependant = pending.pop()
        if getattr(dependant.call, "authorizes_first", False):
            call: Authorizer = dependant.call  # type: ignore[assignment]
            return call
        pending.extend(dependant.dependencies)
    return None


def api_router(**kwargs: Any) -> APIRouter:
    """An ``APIRouter`` (same arguments) whose routes are ``OneHopRoute``s."""
    return APIRouter(route_class=OneHopRoute, **kwargs)


def _plain_function(endpoint: Callable[..., Any]) -> bool:
    unwrapped = inspect.unwrap(endpoint)
    return inspect.isfunction(unwrapped) and not (
        inspect.iscoroutinefunction(unwrapped)
        or inspect.isgeneratorfunction(unwrapped)
        or inspect.isasyncgenfunction(unwrapped)
    )


def _in_one_hop(endpoint: Callable[..., Any], route: APIRoute) -> Callable[..., Any]:
    # functools.wraps keeps the signature, name, docstring and globals FastAPI reads the
    # parameters, the OpenAPI operation and the response model from (via __wrapped__).
    def answer(arguments: dict[str, Any]) -> Any:
        content = endpoint(**arguments)
        # The field exists once the route is built (super().__init__), before any request.
        field = route.response_field
        if field is None or isinstance(content, Response):
            return content
        value, errors = field.validate(content, {}, loc=("response",))
        return content if errors else value

    @functools.wraps(endpoint)
    async def in_a_worker_thread(**arguments: Any) -> Any:
        # run_in_threadpool copies the request's context (the bound tenant) into the thread,
        # as FastAPI does for a sync endpoint.
        return await run_in_threadpool(answer, arguments)

    return in_a_worker_thread
