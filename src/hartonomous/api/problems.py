"""Every HTTP error is an RFC 9457 problem (`application/problem+json`), docs/api.md.

Body: ``type`` (``urn:hartonomous:problem:<code>``), ``title``, ``status``, ``detail``,
``instance`` (the request path), plus ``code`` (the stable machine code of the
``HartonomousError``), ``request_id`` (the ``X-Request-ID`` header) and, for a validation error,
``errors``: one ``{"field", "message", "type"}`` per offending field. A 401 carries
``WWW-Authenticate: Bearer``; a 429 ``Retry-After``.

``document_problems`` writes these answers into the OpenAPI document once for every operation
(``PROBLEM_STATUSES`` on each `/v1` operation, ``EVERY_OPERATION_STATUSES`` on the others),
replacing FastAPI's default
422 body, so that clients and schemathesis see every status the API can answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from hartonomous.api.shutdown import ShuttingDownError
from hartonomous.errors import HartonomousError, NotAuthenticatedError, RateLimitedError
from hartonomous.security.authentication import (
    Caller,
    KeyPrincipalDisabledError,
    KeyTenantDisabledError,
)
from hartonomous.security.key_cache import VerifiedKeyCache
from hartonomous.security.principals import PrincipalDisabledError
from hartonomous.security.tenants import TenantDisabledError
from hartonomous.services.database_errors import as_hartonomous_error

__all__ = [
    "EVERY_OPERATION_STATUSES",
    "PROBLEM_MEDIA_TYPE",
    "PROBLEM_STATUSES",
    "Problem",
    "ProblemField",
    "ValidationProblem",
    "document_problems",
    "error_problem",
    "install_problem_handlers",
    "printable",
    "problem_response",
]

PROBLEM_MEDIA_TYPE = "application/problem+json"
REQUEST_ID_HEADER = "X-Request-ID"

log = structlog.get_logger(__name__)


class ProblemField(BaseModel):
    """One offending field of a refused request."""

    field: str = Field(description="Where: `body.name`, `query.limit`, `path.atom_id` …")
    message: str = Field(description="What is wrong with it, for a person")
    type: str = Field(description="A machine kind of the failure (`missing`, `int_parsing` …)")


class Problem(BaseModel):
    """An RFC 9457 problem: every error the API answers (`application/problem+json`)."""

    # RFC 9457 lets a problem type carry extension members beyond the ones listed here.
    model_config = ConfigDict(extra="allow")

    type: str = Field(description="`urn:hartonomous:problem:<code>`")
    title: str = Field(description="A short summary of the problem type")
    status: int = Field(description="The HTTP status code, repeated")
    detail: str = Field(description="What went wrong with this request, for a person")
    instance: str = Field(description="The request path")
    code: str = Field(description="Stable machine code (docs/api.md lists them)")
    request_id: str | None = Field(description="The `X-Request-ID` of the request")


class ValidationProblem(Problem):
    """A 422 problem: the request did not match the operation's declared parameters or body."""

    errors: list[ProblemField] = Field(description="One entry per offending field")


# The statuses every `/v1` operation documents (docs/api.md, Errors).
PROBLEM_STATUSES: dict[int, str] = {
    400: "Invalid input (`invalid-input`, `invalid-cursor`, …)",
    401: "No, unknown, expired or revoked API key (`not-authenticated`)",
    403: "The key's role may not do this (`forbidden`)",
    404: "No such thing for this tenant (`not-found`)",
    409: "Exists already, or in a state that does not allow this (`conflict`)",
    413: "Body or upload over its limit (`payload-too-large`)",
    415: "Body in a media type the operation does not take (`unsupported-media-type`)",
    422: "Parameters or body do not match the operation (`invalid-request`, `errors` lists them)",
    414: "Request target over 65,535 bytes (`uri-too-long`), answered by the server",
    429: "Over a rate limit (`rate-limited`)",
    431: "Request line and headers over 1 MiB (`request-header-fields-too-large`)",
    500: "The server failed (`internal-error`, `operation-failed`); quote the request id",
    503: "The database or a service is not available (`unavailable`)",
}
# What every operation, `/v1` or not, may answer: a query parameter it does not take
# (api/query_parameters.py), a head the server refuses (api/http_protocol.py), a failure.
EVERY_OPERATION_STATUSES: dict[int, str] = {
    status: PROBLEM_STATUSES[status] for status in (400, 414, 431, 500)
}
_HEADER_DOCS: dict[int, dict[str, tuple[str, bool]]] = {
    401: {"WWW-Authenticate": ('`Bearer realm="hartonomous"`', True)},
    429: {
        "Retry-After": ("Seconds until the window has room again", True),
        "RateLimit": ("The remaining quota and reset of the limit that applied", False),
        "RateLimit-Policy": ("The limit that applied (quota and window)", False),
    },
}


def problem_response(
    request: Request,
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """A problem+json response for ``request`` (see the module docstring for its members)."""
    if "errors" in extra:
        extra["errors"] = [
            {**error, "field": printable(error["field"]), "message": printable(error["message"])}
            for error in extra["errors"]
        ]
    body: dict[str, Any] = {
        "type": f"urn:hartonomous:problem:{code}",
        "title": title,
        "status": status,
        "detail": printable(detail),
        "instance": printable(request.url.path),
        "code": code,
        "request_id": getattr(request.state, "request_id", None),
        **extra,
    }
    headers = dict(headers or {})
    if body["request_id"]:
        # Also here: a 500 is answered outside the middleware that sets it on other responses.
        headers[REQUEST_ID_HEADER] = body["request_id"]
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


# C0 and C1 controls (an escape sequence would reach the terminal of whoever reads the
# problem or the log) and the bidirectional overrides of the Trojan-Source kind.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with every control character and bidirectional override written as its
    Python escape (``\\x1b``, ``\\u202e``): what a problem body carries from the request
    (a field name, the path, a detail quoting either) is shown, never acted on."""
    if not _UNPRINTABLE.search(text):
        return text
    return _UNPRINTABLE.sub(lambda found: repr(found.group())[1:-1], text)


def _field(location: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in location)


def _as_authentication_failure(request: Request, exc: HartonomousError) -> HartonomousError:
    """The caller's own tenant or principal found disabled deeper in a request (a 409 from the
    services) is the 401 its key gets at authentication: its key was admitted from the cache
    of verified keys before the change reached this process (security/key_cache.py). The key
    is dropped from the cache, so its next request is looked up and refused at once."""
    caller = getattr(request.state, "caller", None)
    if not isinstance(caller, Caller):
        return exc
    refusal: HartonomousError
    if isinstance(exc, TenantDisabledError) and exc.tenant_id == caller.tenant_id:
        refusal = KeyTenantDisabledError(caller.key_id, caller.tenant_id)
    elif isinstance(exc, PrincipalDisabledError) and (exc.tenant_id, exc.principal_id) == (
        caller.tenant_id,
        caller.principal_id,
    ):
        refusal = KeyPrincipalDisabledError(caller.key_id, caller.principal_id)
    else:
        return exc
    keys = getattr(request.app.state, "key_cache", None)
    if isinstance(keys, VerifiedKeyCache):
        keys.forget(caller.key_id)
    return refusal


async def _hartonomous_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HartonomousError)
    return error_problem(request, exc)


def error_problem(request: Request, exc: HartonomousError, **extra: Any) -> JSONResponse:
    """The problem answering ``exc`` (its ``http_status``, ``code``, ``title`` and message),
    with the headers its kind carries (``WWW-Authenticate`` on a 401, ``Retry-After`` on a 429
    or while shutting down) and ``extra`` members (``errors``)."""
    exc = _as_authentication_failure(request, exc)
    headers: dict[str, str] = {}
    if isinstance(exc, NotAuthenticatedError):
        headers["WWW-Authenticate"] = 'Bearer realm="hartonomous"'
    if isinstance(exc, RateLimitedError):
        headers["Retry-After"] = str(exc.retry_after_seconds)
        headers.update(getattr(exc, "headers", {}) or {})
    if isinstance(exc, ShuttingDownError):
        # The rest of the body is never read: the connection cannot carry another request.
        headers["Retry-After"] = str(exc.retry_after_seconds)
        headers["Connection"] = "close"
    return problem_response(
        request,
        status=exc.http_status,
        code=exc.code,
        title=exc.title,
        detail=str(exc),
        headers=headers or None,
        **extra,
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    content_type = request.headers.get("content-type", "")
    if _body_not_json(exc.errors(), content_type):
        # FastAPI reads a body of another media type as bytes, and pydantic then says it is
        # "not a valid dictionary": the problem is the media type, so say that.
        return problem_response(
            request,
            status=415,
            code="unsupported-media-type",
            title="Unsupported media type",
            detail=(
                f"the body must be JSON (Content-Type: application/json), "
                f"not {content_type.split(';')[0].strip() or 'a body without a Content-Type'}"
            ),
        )
    # A parameter a route and its dependency both declare (`job_id` of the route and of the
    # dependency finding the job) is reported by each: list it once.
    errors = list(
        {tuple(entry.items()): entry for entry in map(_validation_entry, exc.errors())}.values()
    )
    literal = _literal_path_methods(request)
    if literal and any(_refuses_the_path(error) for error in errors):
        # `GET /v1/dead-letters/replay` reaches `GET /v1/dead-letters/{dead_letter_id}`, whose
        # id it is not: the path is another route's, which does not take this method.
        # Routing cannot say so itself: Starlette takes the sibling's full match over the
        # literal route's method mismatch, and a `{dead_letter_id:int}` convertor would make
        # every malformed id a 404, not the 422 naming it (docs/api.md, "Errors").
        return problem_response(
            request,
            status=405,
            code="http-405",
            title="Method Not Allowed",
            detail="Method Not Allowed",
            headers={"Allow": ", ".join(literal)},
        )
    fields = ", ".join(error["field"] for error in errors) or "the request"
    return problem_response(
        request,
        status=422,
        code="invalid-request",
        title="Invalid request",
        detail=f"invalid {fields}",
        errors=errors,
    )


def _refuses_the_path(error: Mapping[str, str]) -> bool:
    """A path parameter refused, or a body refused by a route that takes none (api/routing.py)
    before its path parameters were read: either way the route matched only as a sibling."""
    return error["field"].startswith("path.") or (
        error["field"] == "body" and error["type"] == "extra_forbidden"
    )


def _validation_entry(error: Mapping[str, Any]) -> dict[str, str]:
    location = tuple(error.get("loc", ()))
    if error.get("type") == "json_invalid" and location[:1] == ("body",):
        # pydantic puts the character offset where a field name would be ("body.13").
        where = f" at character {location[1]}" if len(location) > 1 else ""
        reason = error.get("ctx", {}).get("error", "JSON decode error")
        return {
            "field": "body",
            "message": f"the body is not valid JSON: {reason}{where}",
            "type": "json_invalid",
        }
    return {
        "field": _field(location),
        "message": error.get("msg", ""),
        "type": error.get("type", ""),
    }


def _body_not_json(errors: Sequence[Mapping[str, Any]], content_type: str) -> bool:
    media_type = content_type.split(";", maxsplit=1)[0].strip().lower()
    is_json = media_type == "application/json" or media_type.endswith("+json")
    return not is_json and any(
        tuple(error.get("loc", ())) == ("body",)
        and error.get("type") in ("model_attributes_type", "dict_type")
        for error in errors
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(_allowed_methods(request))
    return problem_response(
        request,
        status=exc.status_code,
        code=f"http-{exc.status_code}",
        title=str(exc.detail) if exc.status_code != 404 else "Not found",
        detail=str(exc.detail),
        headers=headers or None,
    )


def _literal_path_methods(request: Request) -> list[str]:
    """The methods of the routes whose path is exactly the request's, with no parameter in it
    (``/v1/dead-letters/replay``), when the request's method is not one of them."""
    methods = _literal_methods(request)
    return _with_head(methods) if methods and request.method not in methods else []


def _literal_methods(request: Request) -> set[str]:
    methods: set[str] = set()
    for context in iter_route_contexts(request.app.routes):
        if context.path == request.url.path and context.methods:
            methods.update(context.methods)
    return methods


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route takes on this path: Starlette's own 405 names only the first
    route that matched the path, though GET and POST of one path are often two routes.
    Routes are walked as FastAPI's OpenAPI generation walks them (included routers flattened,
    prefixes applied). A path that is exactly a route's own, with no parameter in it
    (``/v1/dead-letters/replay``), takes only that route's methods: the parameterised sibling
    (``/v1/dead-letters/{dead_letter_id}``) refuses it as an id."""
    literal = _literal_methods(request)
    if literal:
        return _with_head(literal)
    methods: set[str] = set()
    for context in iter_route_contexts(request.app.routes):
        if context.path is None or not context.methods:
            continue
        pattern, _, _ = compile_path(context.path)
        if pattern.match(request.url.path):
            methods.update(context.methods)
    return _with_head(methods)


def _with_head(methods: set[str]) -> list[str]:
    # Every GET route answers HEAD too (api/head_requests.py).
    return sorted(methods | {"HEAD"} if "GET" in methods else methods)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # A driver error not wrapped by a service is still the database's kind of failure: a
    # restarting server is 503 `database-unavailable` (retry later), not an internal error.
    known = as_hartonomous_error(exc)
    if known is not None:
        log.warning("database_error", path=request.url.path, error=str(known))
        return await _hartonomous_error(request, known)
    # The traceback goes to the log under the request id; the caller gets the id to quote.
    log.error("unhandled_error", path=request.url.path, exc_info=exc)
    return problem_response(
        request,
        status=500,
        code="internal-error",
        title="Internal server error",
        detail="the server failed to handle this request; quote the request id to an operator",
    )


def install_problem_handlers(app: FastAPI) -> None:
    """Answer every error raised under ``app`` as a problem, and document them in its OpenAPI."""
    app.add_exception_handler(HartonomousError, _hartonomous_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
    app.openapi = _documenting_problems(app.openapi)  # type: ignore[method-assign]


def _documenting_problems(generate: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    def openapi() -> dict[str, Any]:
        # FastAPI caches the document it generates; decorating it twice changes nothing.
        return document_problems(generate())

    return openapi


def document_problems(document: dict[str, Any]) -> dict[str, Any]:
    """Add the problem answers to every operation of an OpenAPI 3.1 ``document`` (in place).

    Each `/v1` operation gets every status of ``PROBLEM_STATUSES`` it does not document itself,
    every other one ``EVERY_OPERATION_STATUSES``; the 422 body is ``ValidationProblem``
    instead of FastAPI's ``HTTPValidationError``, which is dropped from the components when
    nothing uses it. An error status a route declares itself
    (``responses={409: {"description": …}}``) keeps its description and headers, and its body
    is documented as the problem it is answered with.
    Returns ``document``.
    """
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for model in (Problem, ValidationProblem):
        definition = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(definition.pop("$defs", {}))
        schemas[model.__name__] = definition
    for path, operations in document.get("paths", {}).items():
        documented = PROBLEM_STATUSES if path.startswith("/v1/") else EVERY_OPERATION_STATUSES
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            statuses = dict(documented)
            if _is_fastapi_validation(responses.get("422", {})):
                del responses["422"]
                statuses[422] = PROBLEM_STATUSES[422]
            for status, description in statuses.items():
                responses.setdefault(str(status), _problem_response(status, description))
            for status, response in responses.items():
                # Every error is answered as a problem, whatever body a route declared for it
                # (none, an empty `application/problem+json`, or FastAPI's `application/json`).
                if status[:1] in {"4", "5"} and not _has_problem_schema(response):
                    problem = _problem_response(int(status), response.get("description", ""))
                    responses[status] = {**response, "content": problem["content"]}
    if "HTTPValidationError" in schemas and "#/components/schemas/HTTPValidationError" not in str(
        document.get("paths", {})
    ):
        del schemas["HTTPValidationError"]
        if "#/components/schemas/ValidationError" not in str(schemas):
            schemas.pop("ValidationError", None)
    return document


def _has_problem_schema(response: dict[str, Any]) -> bool:
    content = response.get("content", {})
    return list(content) == [PROBLEM_MEDIA_TYPE] and "schema" in content[PROBLEM_MEDIA_TYPE]


def _is_fastapi_validation(response: dict[str, Any]) -> bool:
    return "HTTPValidationError" in str(response.get("content", {}))


def _problem_response(status: int, description: str) -> dict[str, Any]:
    model = "ValidationProblem" if status == 422 else "Problem"
    response: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": f"#/components/schemas/{model}"}}},
    }
    headers = {
        name: {"description": text, "required": required, "schema": {"type": "string"}}
        for name, (text, required) in _HEADER_DOCS.get(status, {}).items()
    }
    if headers:
        response["headers"] = headers
    return response
