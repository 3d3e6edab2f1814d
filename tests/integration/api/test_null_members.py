"""One `null` rule on every JSON request body (hartonomous/request_bodies.py, docs/api.md "Types").

Walked from the live app's `/openapi.json`, for every operation taking an `application/json`
body, every member of the body (nested objects and the objects of arrays included):

- the schema of each optional member admits `null`;
- `null` for an optional member is answered exactly as the member left out (same status, same
  problem code, same errors);
- `null` for a required member is a 422 naming it (`body.tenant_id`, `body.rates.0.operation`);
- a `null` body is answered as no body at all: the same status and problem code, and where the
  body is required the same 422 naming `body` (pydantic's message says it is not an object).

Path parameters are filled with `x`, as in test_bad_requests.py: a route that refuses `x` as an
id lists the body's errors beside the path's (FastAPI validates both at once), so the body's
rule is seen on every route without running it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from hartonomous.security.roles import Role

from .conftest import IssueKey, bearer

JSON_TYPE = {"content-type": "application/json"}


@pytest.fixture
def client(api: TestClient, issue_key: IssueKey) -> TestClient:
    api.headers.update(bearer(issue_key(role=Role.ADMIN)))
    return api


def _json_bodies(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(method, concrete path, body schema) of every operation taking a JSON body."""
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                concrete = re.sub(r"\{[^}]+\}", "x", path)
                yield method.upper(), concrete, content["application/json"]["schema"]


def _object(schema: dict[str, Any], document: dict[str, Any]) -> dict[str, Any] | None:
    """The object schema ``schema`` is (through a ``$ref`` or a nullable ``anyOf``), or None."""
    branches = [b for b in schema.get("anyOf", [schema]) if b.get("type") != "null"]
    if len(branches) != 1:
        return None
    [branch] = branches
    if "$ref" in branch:
        name = branch["$ref"].rsplit("/", 1)[-1]
        branch = document["components"]["schemas"][name]
    return branch if branch.get("type") == "object" and "properties" in branch else None


Member = tuple[tuple[str | int, ...], bool, dict[str, Any]]


def _members(
    schema: dict[str, Any], document: dict[str, Any], where: tuple[str | int, ...] = ()
) -> Iterator[Member]:
    """(place in the body, required?, schema) of every member, nested ones included."""
    shape = _object(schema, document)
    if shape is None:
        return
    required = set(shape.get("required", ()))
    for name, member in shape["properties"].items():
        place = (*where, name)
        yield place, name in required, member
        yield from _members(member, document, place)
        items = [b.get("items") for b in member.get("anyOf", [member]) if b.get("type") == "array"]
        if items and items[0]:
            yield from _members(items[0], document, (*place, 0))


def _body(place: tuple[str | int, ...], leaf: Any) -> Any:
    """The smallest body reaching ``place``: ``{"rates": [{"operation": leaf}]}``."""
    value = leaf
    for step in reversed(place):
        value = [value] if isinstance(step, int) else {step: value}
    return value


def _outcome(answer: Any) -> tuple[int, str | None, list[dict[str, str]] | None]:
    assert answer.status_code < 500, answer.text
    if answer.headers.get("content-type") != "application/problem+json":
        return answer.status_code, None, None
    problem = answer.json()
    return answer.status_code, problem["code"], problem.get("errors")


def _fields(answer: Any) -> tuple[int, str | None, list[str] | None]:
    status, code, errors = _outcome(answer)
    return status, code, None if errors is None else [error["field"] for error in errors]


def _admits_null(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "null" or any(
        branch.get("type") == "null" for branch in schema.get("anyOf", ())
    )


def test_null_means_absent_for_optional_members_and_is_named_for_required_ones(
    client: TestClient,
) -> None:
    document = client.get("/openapi.json").json()
    walked: dict[str, int] = {"optional": 0, "required": 0, "bodies": 0}
    for method, path, schema in _json_bodies(document):
        walked["bodies"] += 1
        for place, required, member in _members(schema, document):
            field = ".".join(map(str, ("body", *place)))
            sent = client.request(method, path, json=_body(place, None))
            if required:
                walked["required"] += 1
                status, code, errors = _outcome(sent)
                assert (status, code) == (422, "invalid-request"), (method, path, field)
                assert errors is not None
                named = [error for error in errors if error["field"] == field]
                assert named, (method, path, field, errors)
                assert all(error["type"] != "missing" for error in named)
            else:
                walked["optional"] += 1
                assert _admits_null(member), (method, path, field, member)
                left_out = client.request(method, path, json=_body(place[:-1], {}))
                assert _outcome(sent) == _outcome(left_out), (method, path, field)
    # The walk reached the bodies it is about (a schema change must not empty it silently).
    assert walked["bodies"] >= 19, walked
    assert walked["optional"] >= 60, walked
    assert walked["required"] >= 20, walked


def test_a_null_body_is_answered_as_no_body_on_every_route(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    bodies = list(_json_bodies(document))
    assert ("POST", "/v1/graph/repair") in [(method, path) for method, path, _ in bodies]
    for method, path, _ in bodies:
        null = client.request(method, path, content=b"null", headers=JSON_TYPE)
        absent = client.request(method, path)
        assert _fields(null) == _fields(absent), (method, path, null.text, absent.text)


def test_a_null_member_is_its_default_where_the_route_runs(client: TestClient) -> None:
    """What the walk cannot see from the errors alone: the default is used (a key's label, a
    search's k, a repair's batch size)."""
    made = client.post(
        "/v1/tenants", json={"tenant_id": "nulls", "display_name": None}
    ).raise_for_status()
    assert made.json()["display_name"] == "nulls"
    client.post(
        "/v1/tenants/nulls/principals", json={"principal_id": "p", "role": None, "kind": None}
    ).raise_for_status()
    key = client.post(
        "/v1/tenants/nulls/keys", json={"principal_id": "p", "label": None, "expires_at": None}
    )
    assert key.status_code == 201, key.text
    assert key.json()["key"]["label"] == ""
    found = client.post("/v1/search", json={"query": "x", "k": None, "filters": None})
    assert found.status_code == 200, found.text
    repaired = client.post("/v1/graph/repair", json={"batch_size": None})
    assert repaired.status_code == 200, repaired.text
    assert client.post("/v1/graph/repair", content=b"null", headers=JSON_TYPE).status_code == 200
