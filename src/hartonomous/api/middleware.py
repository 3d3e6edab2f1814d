"""Refusing malformed requests before any route runs, and the caller's request id.

``RequestHygieneMiddleware`` answers a 400 problem (docs/api.md, Errors) naming what is wrong
when a request could only reach a route to fail there obscurely:

- a path that is not UTF-8 once percent-decoded, holds a NUL character, a ``.`` or ``..``
  segment, or a segment longer than ``MAX_PATH_SEGMENT_CHARACTERS``;
- a query parameter that is not UTF-8 or holds a NUL character;
- a header that may be given once (``Authorization``, ``Content-Type``, ``Content-Encoding``,
  ``Content-Length``) given twice;
- a body with a ``Content-Encoding`` other than ``identity``: 415 (no route decodes one);
- a ``Content-Length`` that is not a decimal number (413 when it announces a JSON body over
  ``MAX_JSON_BODY_BYTES``);
- a JSON body over ``MAX_JSON_BODY_BYTES`` (413), not UTF-8, or holding a NUL character in a
  string or key: PostgreSQL's ``text`` and ``jsonb`` cannot store one;
- a JSON body holding ``NaN`` or ``Infinity``, which RFC 8259 does not have and Python's json
  reads, or an object naming a key twice (``{"k": 5, "k": 6}``, which Python's json reads as
  its last value): the 422 of any malformed JSON (``MalformedJsonError``), naming the key, the
  object holding it (``body.filters``) and the character offset of the repeat.

On a `/v1` path a refused body *content* (not UTF-8, NUL, a content coding) is not answered
here: it is left in the request's scope (``BODY_REFUSAL``) for the route, which raises it only
after the caller is authenticated and authorized (api/routing.py), so a caller without a key
hears 401 and one without the role 403 whatever the body holds. Malformed JSON itself is left
to FastAPI, whose 422 names the position of the syntax error (also after authorization).

A JSON body is parsed here once: the document, kept in the scope's state (``PARSED_BODY``), is
what the route reads as its body (api/routing.py hands it to FastAPI), so it is not parsed a
second time.
It is pure ASGI (not ``BaseHTTPMiddleware``) so streamed uploads and responses pass through
untouched; only JSON bodies, which are small, are read ahead.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote_to_bytes

from fastapi.exceptions import RequestValidationError
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hartonomous.api.problems import error_problem, problem_response
from hartonomous.errors import PayloadTooLargeError, UsageError
from hartonomous.ui.access import PAGE_QUERY_REFUSAL

__all__ = [
    "BODY_REFUSAL",
    "MAX_JSON_BODY_BYTES",
    "MAX_PATH_SEGMENT_CHARACTERS",
    "PARSED_BODY",
    "MalformedJsonError",
    "RequestHygieneMiddleware",
    "UnsupportedMediaTypeError",
    "caller_request_id",
    "check_json_text",
    "json_invalid",
    "refusal_response",
]

MAX_JSON_BODY_BYTES = 1_048_576
MAX_PATH_SEGMENT_CHARACTERS = 1024
_CALLER_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
_JSON_MEDIA_TYPE = re.compile(r"^application/([a-z0-9.+-]*\+)?json$")
# The key, in the ASGI scope's "state", of a body refusal a `/v1` route raises once the caller
# is authorized (api/routing.py).
BODY_REFUSAL = "hartonomous.body_refusal"
# The key, in the ASGI scope's "state", of the JSON document the body parsed to (api/routing.py
# hands it to FastAPI, which would otherwise parse the body again).
PARSED_BODY = "hartonomous.parsed_body"
_DEFERRING_PREFIX = "/v1/"
_PAGE_PREFIX = "/ui/"


class UnsupportedMediaTypeError(UsageError):
    """A body in a media type or content coding the operation does not take (RFC 9110
    §15.5.16)."""

    code = "unsupported-media-type"
    http_status = 415
    title = "Unsupported media type"


# Headers a request may carry once: two of them leave what the caller meant to the parser's
# choice (Starlette reads the first), as a repeated query parameter does.
_SINGLE_HEADERS = (b"authorization", b"content-type", b"content-encoding", b"content-length")


def caller_request_id(offered: str | None) -> str:
    """The caller's ``X-Request-ID`` when it is short printable text, a new id otherwise."""
    # Honour a caller's id so one request can be followed across services, but never echo
    # arbitrary text into a header or the logs.
    if offered and _CALLER_REQUEST_ID.fullmatch(offered):
        return offered
    return uuid.uuid4().hex


class RequestHygieneMiddleware:
    """Answers the module docstring's malformed requests with a problem; passes the rest on."""

    def __init__(self, app: ASGIApp, *, max_json_body_bytes: int = MAX_JSON_BODY_BYTES) -> None:
        self.app = app
        self.max_json_body_bytes = max_json_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            _check_path(scope.get("raw_path") or scope["path"].encode())
            _check_page_query(scope)
            _check_single_headers(scope["headers"])
            headers = Headers(scope=scope)
            coding = _coding_refusal(headers)
            if coding is not None:
                receive = _deferred(scope, coding, receive)
            elif _is_json(headers):
                receive = await self._checked_json_body(scope, headers, receive)
            else:
                _content_length(headers)
        except UsageError as refused:
            await refusal_response(Request(scope), refused)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _checked_json_body(self, scope: Scope, headers: Headers, receive: Receive) -> Receive:
        announced = _content_length(headers)
        if announced is not None and announced > self.max_json_body_bytes:
            raise _too_large(self.max_json_body_bytes)
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                # The client went away: no one to answer (api/disconnects.py ends it quietly).
                raise ClientDisconnect()
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > self.max_json_body_bytes:
                raise _too_large(self.max_json_body_bytes)
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        try:
            document = _checked_json(body)
        except UsageError as refused:
            return _deferred(scope, refused, _replay([{"type": "http.request", "body": body}]))
        if document is not _NOT_JSON:
            scope.setdefault("state", {})[PARSED_BODY] = document
        return _replay([{"type": "http.request", "body": body, "more_body": False}])


def _check_page_query(scope: Scope) -> None:
    """``_check_query``; on an admin UI page the refusal is left in the scope
    (``PAGE_QUERY_REFUSAL``) and the query emptied, so no route reads it."""
    try:
        _check_query(scope.get("query_string", b""))
    except UsageError as refused:
        if not scope["path"].startswith(_PAGE_PREFIX):
            raise
        # The UI answers it with its own error page (ui/app.py), as a person expects.
        scope.setdefault("state", {})[PAGE_QUERY_REFUSAL] = refused
        scope["query_string"] = b""


def _deferred(scope: Scope, refused: UsageError, receive: Receive) -> Receive:
    """On a `/v1` path, ``refused`` kept for the route to raise once the caller is authorized
    (``BODY_REFUSAL``); elsewhere raised at once."""
    if not scope["path"].startswith(_DEFERRING_PREFIX):
        raise refused
    state = scope.setdefault("state", {})
    state[BODY_REFUSAL] = refused
    # A route that reads the body without having answered the refusal still gets it.
    return _refusing(state, receive)


def _check_single_headers(raw: list[tuple[bytes, bytes]]) -> None:
    seen: set[bytes] = set()
    for name, _ in raw:
        if name in _SINGLE_HEADERS:
            if name in seen:
                raise UsageError(f"the {name.decode().title()} header is given more than once")
            seen.add(name)


def _coding_refusal(headers: Headers) -> UnsupportedMediaTypeError | None:
    """A body sent with a content coding (gzip, br, ...): no route decodes one, so reading the
    coded bytes as the body would only fail obscurely (a gzip body "is not valid UTF-8")."""
    coding = headers.get("content-encoding")
    if coding is None or coding.strip().lower() in ("", "identity"):
        return None
    return UnsupportedMediaTypeError(
        f"the body's Content-Encoding {coding[:40]!r} is not accepted: send the body unencoded"
    )


def _replay(messages: list[Message]) -> Receive:
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        return {"type": "http.disconnect"}

    return receive


def _refusing(state: dict[str, Any], receive: Receive) -> Receive:
    async def refuse_while_pending() -> Message:
        refused: UsageError | None = state.get(BODY_REFUSAL)
        if refused is not None:
            raise refused
        return await receive()

    return refuse_while_pending


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(f"a JSON body may hold at most {limit} bytes")


def _is_json(headers: Headers) -> bool:
    content_type = headers.get("content-type")
    if content_type is None:
        # FastAPI reads a body without a content type as JSON.
        return headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
    return bool(_JSON_MEDIA_TYPE.match(content_type.split(";", 1)[0].strip().lower()))


def _content_length(headers: Headers) -> int | None:
    value = headers.get("content-length")
    if value is None:
        return None
    if not value.isascii() or not value.isdigit():
        raise UsageError(f"Content-Length must be a decimal number of bytes, not {value[:40]!r}")
    return int(value)


def _check_path(raw_path: bytes) -> None:
    if (
        len(raw_path) <= MAX_PATH_SEGMENT_CHARACTERS
        and raw_path.isascii()
        and b"%" not in raw_path
        and b"\x00" not in raw_path
        and b"/." not in raw_path
        and not raw_path.startswith(b".")
    ):
        return  # as the segments decode: ASCII, no NUL, no dot segment, none too long
    _check_path_segments(raw_path)


def _check_path_segments(raw_path: bytes) -> None:
    for segment in raw_path.split(b"/"):
        text = _decoded(unquote_to_bytes(segment), "the path")
        if "\x00" in text:
            raise UsageError("the path holds a NUL character")
        if text in {".", ".."}:
            raise UsageError(f"the path holds a {text!r} segment")
        if len(text) > MAX_PATH_SEGMENT_CHARACTERS:
            raise UsageError(
                f"a path segment of {len(text)} characters is longer than the "
                f"{MAX_PATH_SEGMENT_CHARACTERS} allowed"
            )


def _check_query(query_string: bytes) -> None:
    if query_string.isascii() and b"%" not in query_string and b"\x00" not in query_string:
        return  # nothing percent-encoded: ASCII, and no NUL once decoded either
    _check_query_parameters(query_string)


def _check_query_parameters(query_string: bytes) -> None:
    for pair in query_string.split(b"&"):
        raw_name, _, raw_value = pair.partition(b"=")
        name = _decoded(unquote_to_bytes(raw_name.replace(b"+", b" ")), "a query parameter name")
        value = _decoded(
            unquote_to_bytes(raw_value.replace(b"+", b" ")), f"query parameter {name[:40]!r}"
        )
        if "\x00" in name or "\x00" in value:
            raise UsageError(f"query parameter {name[:40]!r} holds a NUL character")


def _decoded(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{what} is not valid UTF-8 (byte {exc.start})") from None


def json_invalid(reason: str, position: int) -> RequestValidationError:
    """The 422 FastAPI raises for a body that is not JSON (``reason`` at character
    ``position``), worded once for every route by api/problems.py."""
    return RequestValidationError(
        [
            {
                "type": "json_invalid",
                "loc": ("body", position),
                "msg": "JSON decode error",
                "input": {},
                "ctx": {"error": reason},
            }
        ]
    )


class MalformedJsonError(UsageError):
    """A body Python's json module reads but the API refuses: ``NaN``, ``Infinity`` (not in
    RFC 8259), a key repeated in one object."""

    def __init__(self, reason: str, position: int) -> None:
        super().__init__(f"the body is not valid JSON: {reason} at character {position}")
        self.reason = reason
        self.position = position


# RFC 8259 has no NaN or Infinity; json.loads (and so FastAPI) reads them as floats.
_NON_JSON_NUMBER = re.compile(r'"(?:\\.|[^"\\])*"|(-?Infinity|NaN)')


def _check_json_numbers(text: str) -> None:
    for found in _NON_JSON_NUMBER.finditer(text):
        if found.group(1):
            raise MalformedJsonError(f"{found.group(1)} is not a JSON number", found.start())


def _checked_json(body: bytes) -> Any:
    if not body:
        return _NOT_JSON  # no body: FastAPI reads none
    return check_json_text(_decoded(body, "the JSON body"))


# What check_json_text answers for text that is not JSON at all.
_NOT_JSON: Any = object()


def check_json_text(text: str) -> Any:
    """The document JSON ``text`` holds, or ``_NOT_JSON`` for malformed JSON, which is left to
    the parser that reads it next (it names where). Refuses what the API does not read:
    ``MalformedJsonError`` for NaN, Infinity or a key repeated in one object, ``UsageError``
    for nesting too deep or a NUL character."""
    if "NaN" in text or "Infinity" in text:
        _check_json_numbers(text)
    # A JSON text can hold a NUL character only as the escape \u0000 (a raw one is a syntax
    # error): without it, the parsed document needs no walk.
    return _checked_document(text, may_hold_nul="\\u0000" in text)


def _checked_document(text: str, *, may_hold_nul: bool = True) -> Any:
    try:
        # The hook refusing a repeated key costs one call per object, in C's parse.
        document = _DECODER.decode(text)
    except RecursionError:
        raise UsageError("the JSON body nests too deeply") from None
    except _DuplicateKey:
        raise _duplicate_key_error(text) from None
    except ValueError:
        return _NOT_JSON  # FastAPI answers malformed JSON with a 422 naming where it breaks
    if may_hold_nul:
        places = list(_nul_locations(document))
        if places:
            raise _NulInBodyError(places)
    return document


class _DuplicateKey(Exception):  # noqa: N818 - a signal out of json.loads, never raised further
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # RFC 8259 says names SHOULD be unique and leaves a repeated one's meaning open; Python's
    # json keeps the last, so `{"k": 5, "k": 6}` would be read as a 6 the sender may not mean.
    document = dict(pairs)
    if len(document) != len(pairs):
        raise _DuplicateKey
    return document


# Built once: json.loads with a hook builds a decoder and its scanner on every call.
_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys)

# The tokens that shape a JSON text: strings (keys among them) and punctuation; numbers and
# literals between them do not matter to where a key is.
_JSON_TOKEN = re.compile(r'"(?:\\.|[^"\\])*"|[{}\[\],:]')


def _duplicate_key_error(text: str) -> MalformedJsonError:
    """The error naming the first repeated key of ``text`` (JSON json.loads read but for the
    repeat), the object holding it (``body.filters``) and the repeat's character offset."""
    # One entry per open container: its place, its keys so far (None: an array), its member.
    open_containers: list[tuple[str, set[str] | None, list[Any]]] = []
    expecting_key = False
    for token in _JSON_TOKEN.finditer(text):
        kind = token.group()
        if kind in ("{", "["):
            where = "body"
            if open_containers:
                parent, _, member = open_containers[-1]
                where = f"{parent}.{member[0]}"
            open_containers.append((where, set() if kind == "{" else None, [0]))
            expecting_key = kind == "{"
        elif kind in ("}", "]"):
            open_containers.pop()
            expecting_key = False
        elif kind == ",":
            _, keys, member = open_containers[-1]
            expecting_key = keys is not None
            if keys is None:
                member[0] += 1
        elif kind == ":":
            expecting_key = False
        elif expecting_key:
            where, keys, member = open_containers[-1]
            key = json.loads(kind)
            assert keys is not None
            if key in keys:
                return MalformedJsonError(f"duplicate key {key!r} in {where}", token.start())
            keys.add(key)
            member[0] = key
    return MalformedJsonError("a duplicate key", 0)  # unreachable for what json.loads read


def refusal_response(request: Request, refused: UsageError) -> Response:
    """The problem answering ``refused`` (a NUL in the body lists each place, in ``errors``;
    NaN, Infinity or a repeated key is the 422 of any malformed JSON)."""
    if isinstance(refused, MalformedJsonError):
        entry = {"field": "body", "message": str(refused), "type": "json_invalid"}
        return problem_response(
            request,
            status=422,
            code="invalid-request",
            title="Invalid request",
            detail="invalid body",
            errors=[entry],
        )
    listed: dict[str, Any] = (
        {"errors": refused.errors} if isinstance(refused, _NulInBodyError) else {}
    )
    return error_problem(request, refused, **listed)


class _NulInBodyError(UsageError):
    """NUL in JSON strings or keys; the problem lists each place like a validation error."""

    def __init__(self, places: list[str]) -> None:
        super().__init__(f"{', '.join(places)} holds a NUL character, which cannot be stored")
        self.errors = [
            {"field": place, "message": "holds a NUL character", "type": "nul_character"}
            for place in places
        ]


def _nul_locations(document: Any) -> Iterator[str]:
    # Iterative: a document json.loads accepted may nest deeper than Python's recursion limit.
    pending: list[tuple[Any, str]] = [(document, "body")]
    while pending:
        value, where = pending.pop()
        if isinstance(value, str):
            if "\x00" in value:
                yield where
        elif isinstance(value, list):
            pending.extend((item, f"{where}.{index}") for index, item in enumerate(value))
        elif isinstance(value, dict):
            for key, item in value.items():
                if "\x00" in key:
                    yield f"a key of {where}"
                pending.append((item, f"{where}.{key}"))
