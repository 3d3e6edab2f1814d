"""Malformed requests get a problem naming the fault, never a 500, on every route of the app.

Each route of the live app (whatever routers are included) is called with a NUL, a `..`
segment, an overlong segment or invalid UTF-8 in its path, NUL or invalid UTF-8 in a query
parameter, a Content-Length that is not a number or absurdly large, and JSON bodies that are
not UTF-8, hold a NUL or nest absurdly deep; a probe route with a JSON body adds malformed JSON,
wrong types and unknown fields.
"""

from __future__ import annotations

import gzip
import json
import re
from typing import Any

import anyio
import pytest
from fastapi import Depends, FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict, StrictInt

from hartonomous.api.auth import Caller, required_role, requires
from hartonomous.api.middleware import MAX_JSON_BODY_BYTES
from hartonomous.api.problems import PROBLEM_MEDIA_TYPE
from hartonomous.api.routing import OneHopRoute, api_router
from hartonomous.security.roles import Role

from .conftest import IssueKey, bearer


class ProbeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    size: StrictInt


def _with_probe(client: TestClient) -> TestClient:
    app = client.app
    assert isinstance(app, FastAPI)

    router = api_router()

    @router.post("/v1/probe-body")
    def probe(body: ProbeBody, caller: Caller = Depends(requires(Role.USER))) -> dict[str, str]:  # noqa: B008
        return {"name": body.name}

    app.include_router(router)
    return client


def _routes(client: TestClient) -> list[tuple[str, str]]:
    """(method, concrete path) of every operation, path parameters filled with a plain value."""
    found = [(method, re.sub(r"\{[^}]+\}", "x", path)) for method, path, _ in _operations(client)]
    assert ("GET", "/v1/me") in found  # the walk sees the app's routers
    return found


def _assert_problem(answer: Any, status: int, *words: str) -> None:
    assert answer.status_code == status, (answer.status_code, answer.text)
    assert answer.headers["content-type"] == PROBLEM_MEDIA_TYPE
    body = answer.json()
    assert body["status"] == status
    assert body["request_id"] == answer.headers["x-request-id"]
    for word in words:
        assert word in body["detail"], (word, body["detail"])


@pytest.fixture
def client(api: TestClient, issue_key: IssueKey) -> TestClient:
    client = _with_probe(api)
    client.headers.update(bearer(issue_key(role=Role.ADMIN)))
    return client


def test_a_bad_path_or_query_is_named_on_every_route(client: TestClient) -> None:
    for method, path in _routes(client):
        faults = {
            f"{path}/a%00b": "NUL",
            f"{path}/%2e%2e/x": "'..'",
            f"{path}/%2E/x": "'.'",
            f"{path}/{'y' * 1100}": "1100 characters",
            f"{path}/%ff%fe": "UTF-8",
            f"{path}?cursor=a%00b": "NUL",
            f"{path}?limit=%ff": "UTF-8",
        }
        for target, named in faults.items():
            _assert_problem(client.request(method, target), 400, named)


def test_a_literal_dot_dot_segment_is_refused_before_routing(client: TestClient) -> None:
    # HTTP clients resolve `..` themselves; a raw request reaches the server with it.
    app = client.app
    assert isinstance(app, FastAPI)
    status, headers, body = anyio.run(_raw_get, app, b"/v1/me/../me")
    assert status == 400
    assert headers[b"content-type"] == PROBLEM_MEDIA_TYPE.encode()
    assert "'..'" in json.loads(body)["detail"]


async def _raw_get(app: FastAPI, raw_path: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": raw_path.decode(),
        "raw_path": raw_path,
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = sent[0]
    return (
        start["status"],
        dict(start["headers"]),
        b"".join(m.get("body", b"") for m in sent[1:]),
    )


def test_a_bad_body_or_content_length_is_named_on_every_route(client: TestClient) -> None:
    json_type = {"content-type": "application/json"}
    deep = b"[" * 100_000 + b"]" * 100_000
    for method, path in _routes(client):
        send = client.request
        _assert_problem(send(method, path, content=b'{"name": "\xff"}', headers=json_type), 400)
        _assert_problem(
            send(method, path, content=b'{"name": "a\\u0000b"}', headers=json_type), 400, "NUL"
        )
        _assert_problem(
            send(method, path, content=b'{"a\\u0000": 1}', headers=json_type), 400, "NUL"
        )
        _assert_problem(send(method, path, content=deep, headers=json_type), 400, "nests")
        too_big = b'"' + b"x" * MAX_JSON_BODY_BYTES + b'"'
        _assert_problem(send(method, path, content=too_big, headers=json_type), 413)
        absurd = {**json_type, "content-length": "9" * 30}
        _assert_problem(send(method, path, content=b"{}", headers=absurd), 413)
        not_a_number = {"content-length": "12abc", "content-type": "application/octet-stream"}
        _assert_problem(send(method, path, content=b"x", headers=not_a_number), 400, "12abc")


def test_malformed_json_wrong_types_and_unknown_fields_are_422_naming_the_field(
    client: TestClient,
) -> None:
    answer = client.post(
        "/v1/probe-body", content=b'{"name": ', headers={"content-type": "application/json"}
    )
    _assert_problem(answer, 422, "body")
    [error] = answer.json()["errors"]
    # The character offset is said as one, not shown as a field ("body.9").
    assert error["field"] == "body"
    assert error["type"] == "json_invalid"
    assert error["message"].startswith("the body is not valid JSON: ")
    assert error["message"].endswith(" at character 9")
    for content_type in ("application/x-www-form-urlencoded", "text/plain", None):
        # curl -d without -H sends a form: the media type is named, not "not a dictionary".
        headers = {"content-type": content_type} if content_type else {}
        sent = client.post("/v1/probe-body", content=b'{"name": "a", "size": 1}', headers=headers)
        _assert_problem(sent, 415)
        assert sent.json()["code"] == "unsupported-media-type"
        assert "application/json" in sent.json()["detail"]
        assert (content_type or "without a Content-Type") in sent.json()["detail"]

    answer = client.post("/v1/probe-body", json={"name": "a", "size": "5"})
    _assert_problem(answer, 422, "body.size")
    answer = client.post("/v1/probe-body", json={"name": "a", "size": True})
    _assert_problem(answer, 422, "body.size")

    answer = client.post("/v1/probe-body", json={"name": "a", "size": 1, "colour": "red"})
    _assert_problem(answer, 422, "body.colour")
    assert answer.json()["errors"] == [
        {
            "field": "body.colour",
            "message": "Extra inputs are not permitted",
            "type": "extra_forbidden",
        }
    ]
    assert client.post("/v1/probe-body", json={"name": "a", "size": 1}).status_code == 200


def _operations(client: TestClient) -> list[tuple[str, str, dict[str, Any]]]:
    paths = client.get("/openapi.json").json()["paths"]
    return [
        (method.upper(), path, operation)
        for path, operations in paths.items()
        for method, operation in operations.items()
        if method in {"get", "put", "post", "delete", "patch"}
    ]


def test_an_unknown_id_in_any_path_or_a_tampered_cursor_is_a_problem(client: TestClient) -> None:
    """Every path parameter (an unknown tenant, atom, job …) and every `cursor` parameter."""
    unknown_values = ["no-such-thing", "0", "-1", "00000000-0000-0000-0000-000000000000", "é"]
    tampered_cursors = ["tampered", "AAAA", "eyJ4IjoxfQ", "!!", "a" * 600]
    walked = 0
    for method, path, operation in _operations(client):
        parameters = operation.get("parameters", [])
        names = [p["name"] for p in parameters if p["in"] == "path"]
        for value in unknown_values if names else []:
            target = path
            for name in names:
                target = target.replace(f"{{{name}}}", value)
            answer = client.request(method, target, json={} if method != "GET" else None)
            assert 400 <= answer.status_code < 500, (method, target, answer.text)
            assert answer.headers["content-type"] == PROBLEM_MEDIA_TYPE, (method, target)
            walked += 1
        if method == "GET" and any(p["name"] == "cursor" for p in parameters) and not names:
            for cursor in tampered_cursors:
                answer = client.get(path, params={"cursor": cursor})
                _assert_problem(answer, 400)
                assert answer.json()["code"] == "invalid-cursor", (path, answer.text)
                walked += 1
    # Which routes have ids or cursors grows with the API; on the skeleton there are none.
    print(f"{walked} unknown ids and tampered cursors sent")


def test_an_empty_cursor_is_an_invalid_cursor_on_every_listing(client: TestClient) -> None:
    """One rule for `cursor=` (empty) on every listing: 400 `invalid-cursor`, never the first
    page (a client that lost its cursor must not start over without knowing)."""
    walked = []
    for method, path, operation in _operations(client):
        parameters = operation.get("parameters", [])
        names = {p["name"] for p in parameters if p["in"] == "path"}
        if method != "GET" or not any(p["name"] == "cursor" for p in parameters):
            continue
        if names - {"tenant_id"}:
            continue  # an id naming nothing would be the 404 first
        target = path.replace("{tenant_id}", "acme")
        answer = client.get(target, params={"cursor": ""})
        _assert_problem(answer, 400, "cursor is empty")
        assert answer.json()["code"] == "invalid-cursor", (target, answer.text)
        walked.append(path)
    assert {"/v1/tenants", "/v1/tenants/{tenant_id}/keys", "/v1/holdings"} <= set(walked)
    assert len(walked) >= 7, walked


# A value for each shape of path parameter that no route would read as an id.
_NOT_AN_ID = "not an id!"
# Well-formed ids that name nothing: the first one a parameter's pattern takes is sent.
_WELL_FORMED = ["0" * 64, "0" * 16, "no-such-thing", "no_such_plan"]


def _malformed(schema: dict[str, Any]) -> str:
    if "pattern" in schema or schema.get("format") == "uuid" or schema.get("type") == "integer":
        return _NOT_AN_ID
    # An id with no pattern has a length it cannot pass (an unbounded one is a defect).
    assert "maxLength" in schema, schema
    return "x" * (schema["maxLength"] + 1)


def _well_formed(schema: dict[str, Any]) -> str:
    if schema.get("type") == "integer":
        return str(2**62)
    if schema.get("format") == "uuid":
        return "00000000-0000-4000-8000-000000000000"
    pattern = schema.get("pattern", ".*")
    return next(value for value in _WELL_FORMED if re.search(pattern, value))


def test_a_malformed_path_id_is_422_naming_it_and_an_absent_one_404_on_every_route(
    client: TestClient,
) -> None:
    """One rule (docs/api.md, "Errors"): not shaped like an id, 422 `invalid-request` naming the
    parameter; shaped like one but naming nothing the caller may see, 404."""
    walked: set[str] = set()
    for method, path, operation in _operations(client):
        parameters = {p["name"]: p["schema"] for p in operation.get("parameters", [])}
        names: list[str] = re.findall(r"\{([^}]+)\}", path)
        for bad in names:
            target = path
            for name in names:
                value = (
                    _malformed(parameters[name]) if name == bad else _well_formed(parameters[name])
                )
                target = target.replace(f"{{{name}}}", value)
            answer = client.request(method, target)
            _assert_problem(answer, 422)
            assert answer.json()["code"] == "invalid-request", (method, target)
            fields = [error["field"] for error in answer.json()["errors"]]
            assert f"path.{bad}" in fields, (method, target, fields)
            walked.add(f"{method} {path}")
        if not names or names == ["period"]:  # a month is not an id: closing one is a 200
            continue
        target = path
        for name in names:
            target = target.replace(f"{{{name}}}", _well_formed(parameters[name]))
        answer = client.request(method, target)
        if method in {"GET", "DELETE"}:
            _assert_problem(answer, 404)
        else:  # a missing body may be the complaint, never the well-formed id
            assert answer.status_code in {404, 422}, (method, target, answer.text)
            errors = answer.json().get("errors", [])
            assert not [e for e in errors if e["field"].startswith("path.")], (target, errors)
    for expected in (
        "GET /v1/dead-letters/{dead_letter_id}",
        "GET /v1/inference/{inference_id}",
        "GET /v1/tenants/{tenant_id}/principals/{principal_id}",
        "POST /v1/tenants/{tenant_id}/keys/{key_id}/revoke",
        "POST /v1/ledger/periods/{period}/close",
    ):
        assert expected in walked


def test_a_literal_path_asked_with_another_method_is_405_not_a_malformed_id(
    client: TestClient,
) -> None:
    """`/v1/dead-letters/replay` is also `/v1/dead-letters/{dead_letter_id}` by its shape."""
    for path, allowed in (("/v1/dead-letters/replay", "POST"), ("/v1/inference/upload", "POST")):
        # GET reaches the sibling's id check; OPTIONS, PUT and DELETE reach no route at all:
        # each must name only the literal route's methods.
        for method in ("GET", "OPTIONS", "PUT", "DELETE"):
            answer = client.request(method, path)
            _assert_problem(answer, 405)
            assert answer.headers["allow"] == allowed, method
            # A body too: the sibling takes none, but the path is not its id either.
            answer = client.request(method, path, json={"all": False})
            _assert_problem(answer, 405)
            assert answer.headers["allow"] == allowed, method


def test_json_bodies_are_strict_and_query_parameters_are_parsed(client: TestClient) -> None:
    """A string is not a number, a number is not a string or a time, a bool is not an integer,
    on every route with a JSON body (tests/unit/api/test_strict_bodies.py walks them all)."""
    key = "/v1/tenants/acme/keys/0123456789abcdef"
    plan = {"plan_code": "strict", "name": "Strict"}
    for path, body, field in (
        ("/v1/search", {"query": "x", "k": "5"}, "body.k"),
        ("/v1/search", {"query": "x", "k": True}, "body.k"),
        ("/v1/search", {"query": 5}, "body.query"),
        ("/v1/graph/repair", {"batch_size": "5"}, "body.batch_size"),
        ("/v1/graph/repair", {"batch_size": True}, "body.batch_size"),
        ("/v1/graph/replay", {"since": 0}, "body.since"),
        (f"{key}/revoke", {"grace_seconds": "5"}, "body.grace_seconds"),
        (f"{key}/rotate", {"expires_at": 1_900_000_000}, "body.expires_at"),
        ("/v1/billing/plans", {**plan, "included_seat_count": "5"}, "body.included_seat_count"),
        ("/v1/billing/plans", {**plan, "allows_private_data": 1}, "body.allows_private_data"),
        ("/v1/billing/plans", {**plan, "monthly_fee": 5}, "body.monthly_fee"),
        ("/v1/inference/00000000-0000-4000-8000-000000000000/feedback", {"rating": "5"}, None),
    ):
        answer = client.post(path, json=body)
        _assert_problem(answer, 422)
        fields = [error["field"] for error in answer.json()["errors"]]
        assert (field or "body.rating") in fields, (path, body, fields)
    # Query parameters are text by nature: `?limit=5` is the number 5.
    assert client.get("/v1/holdings?limit=5").status_code == 200


def test_an_integer_parameter_not_in_ascii_digits_is_422_naming_it(client: TestClient) -> None:
    """`+5`, `1_0`, ` 5`, `0x10`, `5.0`: Python reads them, the OpenAPI `integer` does not."""
    for path, field in (
        ("/v1/holdings?limit={}", "query.limit"),
        ("/v1/tenants?limit={}", "query.limit"),
        ("/v1/dead-letters/{}", "path.dead_letter_id"),
    ):
        for text in ("%2B5", "1_0", "%205", "0x10", "5.0"):
            answer = client.get(path.format(text))
            _assert_problem(answer, 422, field)
            assert [error["field"] for error in answer.json()["errors"]] == [field], text
    assert client.get("/v1/holdings?limit=5").status_code == 200


def test_an_integral_number_is_an_integer_on_every_integer_field(client: TestClient) -> None:
    """JSON Schema 2020-12 (OpenAPI 3.1) counts 5.0 as an integer: read as 5; 5.5 and 1e400
    (infinity to Python's json) are a 422 naming the field (docs/api.md, "Types")."""
    json_type = {"content-type": "application/json"}
    for spelt in (b"3.0", b"3e0", b"0.3e1"):
        search = b'{"query": "x", "k": ' + spelt + b"}"
        found = client.post("/v1/search", content=search, headers=json_type)
        assert found.status_code == 200, (spelt, found.text)
        plan = b'{"plan_code": "p%s", "name": "P", "included_seat_count": %s}' % (
            spelt.replace(b".", b"_"),
            spelt,
        )
        made = client.post("/v1/billing/plans", content=plan, headers=json_type)
        assert made.status_code == 201, (spelt, made.text)
        assert made.json()["included_seat_count"] == 3
    for path, body, field in (
        ("/v1/search", b'{"query": "x", "k": 5.5}', "body.k"),
        ("/v1/search", b'{"query": "x", "k": 1e400}', "body.k"),
        ("/v1/graph/repair", b'{"batch_size": 2.5}', "body.batch_size"),
        ("/v1/billing/plans", b'{"plan_code": "q", "name": "Q", "included_seat_count": 1.5}', None),
    ):
        answer = client.post(path, content=body, headers=json_type)
        _assert_problem(answer, 422)
        fields = [error["field"] for error in answer.json()["errors"]]
        assert fields == [field or "body.included_seat_count"], (path, body, fields)


def _misshapen(schema: dict[str, Any]) -> str | None:
    """A value the query parameter's schema refuses, or None for free text it cannot refuse."""
    branches = [b for b in schema.get("anyOf", [schema]) if b.get("type") != "null"]
    [branch] = branches
    branch = branch.get("items", branch)
    if "enum" in branch or "const" in branch or "$ref" in branch:  # a query's $ref: an enum
        return "bogus"
    shapes = {"integer": "x", "boolean": "maybe"}
    formats = {"date-time": "31/01/2026", "date": "2026-13-45", "uuid": "nope"}
    if branch.get("type") in shapes or branch.get("format") in formats:
        return shapes.get(branch["type"]) or formats[branch["format"]]
    for value in ("!! bogus !!", "", "\t", "x" * (branch.get("maxLength", 10_000) + 1)):
        too_long = len(value) > branch.get("maxLength", len(value))
        too_short = len(value) < branch.get("minLength", 0)
        if too_long or too_short or not re.search(branch.get("pattern", ""), value):
            return value
    return None


def test_a_misshapen_known_query_parameter_is_422_naming_it_on_every_route(
    client: TestClient,
) -> None:
    """One rule (docs/api.md, "Types"): a known query parameter whose value its schema refuses
    (an unknown enum value, a bad time, date, integer or boolean, a pattern or length broken)
    is 422 `invalid-request` listing `query.<name>`, as body validation; an unknown
    parameter is 400."""
    walked = []
    for method, path, operation in _operations(client):
        target = re.sub(r"\{[^}]+\}", "x", path)
        for parameter in operation.get("parameters", []):
            value = _misshapen(parameter["schema"]) if parameter["in"] == "query" else None
            if value is None:
                continue
            answer = client.request(method, target, params={parameter["name"]: value})
            _assert_problem(answer, 422)
            assert answer.json()["code"] == "invalid-request"
            fields = [error["field"] for error in answer.json()["errors"]]
            named = [f for f in fields if f.split(".")[:2] == ["query", parameter["name"]]]
            assert named, (method, path, value, fields)
            walked.append(f"{method} {path} {parameter['name']}")
        unknown = client.request(method, target, params={"no_such_parameter": "1"})
        _assert_problem(unknown, 400, "no_such_parameter")
    for expected in (
        "GET /v1/ledger/entries recorded_since",
        "GET /v1/ledger/report group_by",
        "GET /v1/lineage/{identifier} direction",
        "GET /v1/streams/{stream_id} format",
        "POST /v1/ingest visibility",
        "GET /v1/dead-letters include_replayed",
        "GET /v1/holdings cursor",
    ):
        assert expected in walked, walked


def test_a_single_valued_query_parameter_given_twice_is_refused_naming_it(
    client: TestClient,
) -> None:
    for path in ("/v1/holdings?limit=5&limit=7", "/v1/ledger/entries?operation=a&operation=b"):
        answer = client.get(path)
        _assert_problem(answer, 400, "is given 2 times: give it once")
    # A list parameter repeats by design (`group_by` of the ledger report).
    report = "/v1/ledger/report?since=2026-01-01&until=2026-02-01&group_by=tenant&group_by=day"
    assert client.get(report).status_code == 200


def _guarded_routes(api: TestClient) -> list[tuple[str, str, Role]]:
    """(method, concrete path, least role) of every `/v1` operation that requires a role."""
    app = api.app
    assert isinstance(app, FastAPI)
    routes = [
        (context.path, context.methods or set(), context.original_route)
        for context in iter_route_contexts(app.routes)
        if isinstance(context.original_route, APIRoute)
        and context.path is not None
        and context.path.startswith("/v1/")
    ]
    # Only a OneHopRoute authorizes before it reads the body (api/routing.py).
    assert all(isinstance(route, OneHopRoute) for _, _, route in routes)
    found = [
        (method, re.sub(r"\{[^}]+\}", "x", path), role)
        for path, methods, route in routes
        if (role := required_role(route)) is not None
        for method in sorted(methods - {"HEAD", "OPTIONS"})
    ]
    assert ("POST", "/v1/tenants", Role.ADMIN) in found
    assert ("POST", "/v1/search", Role.USER) in found
    return found


BAD_BODIES = [b"{bad", b'{"name": "a\\u0000b"}', b'{"name": "\xff"}', b"[" * 200 + b"]" * 200]


def test_authentication_and_role_are_checked_before_the_body_on_every_route(
    api: TestClient, issue_key: IssueKey
) -> None:
    """What a caller without a key (401) or without the role (403) hears never depends on the
    body: malformed JSON, a NUL, bytes that are not UTF-8, nesting too deep."""
    json_type = {"content-type": "application/json"}
    user = {**json_type, **bearer(issue_key(role=Role.USER))}
    for method, path, role in _guarded_routes(api):
        for body in BAD_BODIES:
            answer = api.request(method, path, content=body, headers=json_type)
            _assert_problem(answer, 401)
            assert answer.headers["www-authenticate"].startswith("Bearer")
            if role is not Role.USER:
                _assert_problem(api.request(method, path, content=body, headers=user), 403)


def test_a_body_on_a_route_that_takes_none_is_422_and_nothing_is_done(
    client: TestClient,
) -> None:
    """Every operation of `/openapi.json` without a `requestBody` refuses a non-empty body
    (well-formed JSON, malformed JSON, another media type, chunked) with a 422 naming `body`,
    before it does anything; no body or an empty one reaches the route as before."""
    json_type = {"content-type": "application/json"}
    guarded = {(method, path) for method, path, _ in _guarded_routes(client)}
    bodiless = [
        (method, path, re.sub(r"\{[^}]+\}", "x", path))
        for method, path, operation in _operations(client)
        if "requestBody" not in operation
    ]
    assert ("POST", "/v1/dead-letters/{dead_letter_id}/replay") in [m[:2] for m in bodiless]
    assert ("DELETE", "/v1/holdings/{holding_id}") in [m[:2] for m in bodiless]
    for method, _template, path in bodiless:
        # /health/live too: the liveness shortcut answers only a plain GET without a body.
        for body, headers in [
            (b"{}", {"content-type": "application/json"}),
            (b"{bad", {"content-type": "application/json"}),
            (b"x", {"content-type": "text/plain"}),
            (iter([b"", b"{}"]), {"content-type": "application/json"}),  # chunked
        ]:
            answer = client.request(method, path, content=body, headers=headers)
            _assert_problem(answer, 422, "body")
            assert answer.json()["code"] == "invalid-request"
            assert answer.json()["errors"] == [
                {
                    "field": "body",
                    "message": "this operation takes no request body: send none "
                    "(no Content-Length or 0)",
                    "type": "extra_forbidden",
                }
            ], (method, path)
        if (method, path) in guarded:
            # With an unknown key it is still the 401 (authentication first).
            unknown = {**json_type, "authorization": "Bearer hk_0123456789abcdef_nosuchsecret"}
            _assert_problem(client.request(method, path, content=b"{}", headers=unknown), 401)
    # An empty body is no body: the route runs (a 404 for the unknown dead letter).
    empty = client.post("/v1/dead-letters/1/replay", content=b"", headers=json_type)
    assert empty.status_code == 404, empty.text


def test_nan_and_infinity_are_malformed_json_on_every_route(client: TestClient) -> None:
    """RFC 8259 has no NaN or Infinity (Python's json reads them): a 422 naming where, worded
    as any other malformed JSON, on every route; the words inside a string are text."""
    json_type = {"content-type": "application/json"}
    for method, path in [*_routes(client), ("POST", "/v1/usage-events")]:
        for body, token, at in [
            (b'{"k": NaN}', "NaN", 6),
            (b"[1, -Infinity]", "-Infinity", 4),
            (b'{"NaN": "Infinity", "x": Infinity}', "Infinity", 25),
        ]:
            answer = client.request(method, path, content=body, headers=json_type)
            _assert_problem(answer, 422)
            [error] = answer.json()["errors"]
            assert error == {
                "field": "body",
                "message": f"the body is not valid JSON: {token} is not a JSON number "
                f"at character {at}",
                "type": "json_invalid",
            }
    named = client.post("/v1/probe-body", json={"name": "NaN Infinity", "size": 1})
    assert named.status_code == 200, named.text


def test_a_key_repeated_in_one_object_is_malformed_json_on_every_route(client: TestClient) -> None:
    """Python's json keeps the last of `{"k": 5, "k": 6}`: refused as malformed JSON naming the
    key, its object and where it repeats, nested objects included, on every route."""
    json_type = {"content-type": "application/json"}
    for method, path in [*_routes(client), ("POST", "/v1/usage-events")]:
        answer = client.request(method, path, content=b'{"k":5,"k":6}', headers=json_type)
        _assert_problem(answer, 422)
        assert answer.json()["errors"] == [
            {
                "field": "body",
                "message": "the body is not valid JSON: duplicate key 'k' in body at character 7",
                "type": "json_invalid",
            }
        ], (method, path)
    for body, message in [
        (
            b'{"filters": {"since": "x", "s\\u0069nce": "y"}, "query": "a"}',
            "duplicate key 'since' in body.filters at character 27",
        ),
        (b'{"query": "a", "k": 2, "k": 3}', "duplicate key 'k' in body at character 23"),
        (b'[{"a": 1}, {"a": [{"b": 1, "b": 2}]}]', "duplicate key 'b' in body.1.a.0 at "),
    ]:
        answer = client.post("/v1/search", content=body, headers=json_type)
        _assert_problem(answer, 422)
        [error] = answer.json()["errors"]
        assert error["message"].startswith(f"the body is not valid JSON: {message}"), error
    # The same key in two objects is no repeat.
    same = b'{"query": "since", "filters": {"since": "2026-01-01T00:00:00Z"}, "k": 1}'
    assert client.post("/v1/search", content=same, headers=json_type).status_code == 200


def test_control_characters_from_the_request_are_escaped_in_every_problem(
    client: TestClient,
) -> None:
    """A field name, a form field name, the path: shown as escapes, never as raw controls."""
    json_type = {"content-type": "application/json"}
    body = b'{"query": "x", "\\u001b[31m": 1}'
    answer = client.post("/v1/search", content=body, headers=json_type)
    _assert_problem(answer, 422)
    assert answer.json()["errors"][0]["field"] == "body.\\x1b[31m"
    assert answer.json()["detail"] == "invalid body.\\x1b[31m"
    answer = client.get("/v1/tenants/acme/principals/%1b%5b31m%e2%80%ae")
    assert answer.json()["instance"] == "/v1/tenants/acme/principals/\\x1b[31m\\u202e"
    files = {"file": ("a.png", b"x", "image/png")}
    answer = client.post("/v1/search/by-example", files=files, data={"bo\x1bgus": "1"})
    detail = answer.json()["detail"]
    assert "\x1b" not in detail
    assert "bo\\x1bgus" in detail, detail


def test_a_parameter_declared_twice_is_listed_once(client: TestClient) -> None:
    """`job_id` is the route's and its dependency's: one entry, named once in the detail."""
    for path in ("/v1/jobs/nope/events", "/v1/jobs/nope"):
        answer = client.get(path)
        _assert_problem(answer, 422)
        assert [error["field"] for error in answer.json()["errors"]] == ["path.job_id"], path
        assert answer.json()["detail"] == "invalid path.job_id"


def test_usage_events_word_malformed_json_and_media_types_as_every_route(
    client: TestClient,
) -> None:
    events = {"content-type": "application/cloudevents+json"}
    answer = client.post("/v1/usage-events", content=b'{"type": ', headers=events)
    _assert_problem(answer, 422)
    [error] = answer.json()["errors"]
    assert error["message"] == "the body is not valid JSON: Expecting value at character 9"
    elsewhere = client.post(
        "/v1/probe-body", content=b'{"type": ', headers={"content-type": "application/json"}
    )
    assert elsewhere.json()["errors"] == answer.json()["errors"]
    wrong = client.post("/v1/usage-events", content=b"x", headers={"content-type": "text/plain"})
    _assert_problem(wrong, 415)
    assert wrong.json()["title"] == "Unsupported media type"


def test_a_body_with_a_content_coding_is_415_on_every_route_after_authentication(
    client: TestClient, issue_key: IssueKey
) -> None:
    """No route decodes gzip or br: a coded body was read as the body itself ("not valid
    UTF-8 (byte 1)" for gzip, a 200 for plain bytes labelled gzip). RFC 9110 §15.5.16: 415."""
    coded = {"content-type": "application/json", "content-encoding": "gzip"}
    body = gzip.compress(b'{"query": "x"}')
    for method, path in [*_routes(client), ("POST", "/v1/usage-events")]:
        answer = client.request(method, path, content=body, headers=coded)
        _assert_problem(answer, 415, "Content-Encoding 'gzip'")
    labelled = client.post("/v1/probe-body", content=b'{"name": "a", "size": 1}', headers=coded)
    _assert_problem(labelled, 415, "send the body unencoded")
    identity = {"content-type": "application/json", "content-encoding": "identity"}
    plain = client.post("/v1/probe-body", content=b'{"name": "a", "size": 1}', headers=identity)
    assert plain.status_code == 200, plain.text
    # Who may not call the route hears that first, whatever the coding.
    unknown = {**coded, "authorization": "Bearer hk_unknown"}
    _assert_problem(client.post("/v1/search", content=body, headers=unknown), 401)
    user = {**coded, **bearer(issue_key(role=Role.USER))}
    _assert_problem(client.post("/v1/tenants", content=body, headers=user), 403)


def test_a_header_given_twice_that_may_be_given_once_is_400_naming_it(
    client: TestClient,
) -> None:
    for name, values in [
        ("content-type", ["application/json", "text/plain"]),
        ("authorization", [client.headers["authorization"], "Bearer hk_other"]),
        ("content-encoding", ["identity", "identity"]),
    ]:
        headers = [(name.encode(), value.encode()) for value in values]
        answer = client.post("/v1/probe-body", content=b'{"name": "a", "size": 1}', headers=headers)
        _assert_problem(answer, 400, f"{name.title()} header is given more than once")
