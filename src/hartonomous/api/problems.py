"""Every HTTP error is an RFC 9457 problem (`application/problem+json`), docs/api.md.

Body: ``type`` (``urn:hartonomous:problem:<code>``), ``title``, ``status``, ``detail``,
``instance`` (the request path), plus ``code`` (the stable machine code of the
``HartonomousError``), ``request_id`` (the ``X-Request-ID`` header) and, for a validation error,
``errors``: one ``{"field", "message", "type"}`` per offending field. A 401 carries
``WWW-Authenticate: Bearer``; a 429 ``Retry-After``.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from hartonomous.errors import HartonomousError, NotAuthenticatedError, RateLimitedError

__all__ = ["PROBLEM_MEDIA_TYPE", "install_problem_handlers", "problem_response"]

PROBLEM_MEDIA_TYPE = "application/problem+json"
REQUEST_ID_HEADER = "X-Request-ID"

log = structlog.get_logger(__name__)


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
    body: dict[str, Any] = {
        "type": f"urn:hartonomous:problem:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        "code": code,
        "request_id": getattr(request.state, "request_id", None),
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def _field(location: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in location)


async def _hartonomous_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HartonomousError)
    headers: dict[str, str] = {}
    if isinstance(exc, NotAuthenticatedError):
        headers["WWW-Authenticate"] = 'Bearer realm="hartonomous"'
    if isinstance(exc, RateLimitedError):
        headers["Retry-After"] = str(exc.retry_after_seconds)
        headers.update(getattr(exc, "headers", {}) or {})
    return problem_response(
        request,
        status=exc.http_status,
        code=exc.code,
        title=exc.title,
        detail=str(exc),
        headers=headers or None,
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "field": _field(error.get("loc", ())),
            "message": error.get("msg", ""),
            "type": error.get("type", ""),
        }
        for error in exc.errors()
    ]
    fields = ", ".join(error["field"] for error in errors) or "the request"
    return problem_response(
        request,
        status=422,
        code="invalid-request",
        title="Invalid request",
        detail=f"invalid {fields}",
        errors=errors,
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    return problem_response(
        request,
        status=exc.status_code,
        code=f"http-{exc.status_code}",
        title=str(exc.detail) if exc.status_code != 404 else "Not found",
        detail=str(exc.detail),
        headers=headers or None,
    )


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
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
    """Answer every error raised under ``app`` as a problem (the module docstring's shape)."""
    app.add_exception_handler(HartonomousError, _hartonomous_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
