"""The authorization matrix: every /v1 route of the app, with every role and with no key.

Routes are enumerated from ``create_app(...)``, so a route merged later is covered without
editing this test; docs/security.md's matrix must name each one with the role it requires.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient

from hartonomous.api.auth import required_role
from hartonomous.security.roles import Role

from .conftest import IssueKey, bearer

DOC = Path(__file__).parents[3] / "docs" / "security.md"
_ROW = re.compile(
    r"^\|\s*`?(GET|POST|PUT|PATCH|DELETE)`?\s*\|\s*`?(/v1/[^`|\s]*)`?\s*\|\s*`?([a-z-]+)`?"
)
_PLACEHOLDER = re.compile(r"\{[^}]*\}")


def _v1_routes(app: FastAPI) -> list[tuple[str, str, APIRoute]]:
    # FastAPI keeps included routers as branches; iter_route_contexts flattens them with the
    # prefixes applied (it is what FastAPI's own OpenAPI generation walks).
    found = [
        (method, context.path, context.original_route)
        for context in iter_route_contexts(app.routes)
        if isinstance(context.original_route, APIRoute)
        and context.path is not None
        and context.path.startswith("/v1")
        for method in sorted((context.methods or set()) - {"HEAD", "OPTIONS"})
    ]
    assert found, "the app has no /v1 route"
    return found


def _concrete(path: str) -> str:
    # Any value: a request that reaches the route may answer 404 or 422, never 401/403.
    # An integer placeholder ({id:int}) matches digits only, a {id:uuid} one a UUID only.
    def value(placeholder: str) -> str:
        if placeholder.endswith(":int}"):
            return "1"
        return str(uuid.UUID(int=1)) if placeholder.endswith(":uuid}") else "x"

    return _PLACEHOLDER.sub(lambda m: value(m.group()), path)


def _shape(path: str) -> str:
    return _PLACEHOLDER.sub("{}", path)


def test_every_v1_route_requires_a_role(api: TestClient) -> None:
    assert isinstance(api.app, FastAPI)
    unguarded = [f"{m} {p}" for m, p, route in _v1_routes(api.app) if required_role(route) is None]
    assert unguarded == []


def test_every_route_with_every_role_and_no_key(api: TestClient, issue_key: IssueKey) -> None:
    assert isinstance(api.app, FastAPI)
    keys = {role: issue_key(tenant="acme", role=role) for role in Role}
    for method, path, route in _v1_routes(api.app):
        needed = required_role(route)
        assert needed is not None, path
        url = _concrete(path)
        body = {} if method in {"POST", "PUT", "PATCH"} else None
        anonymous = api.request(method, url, json=body)
        assert anonymous.status_code == 401, (method, path, anonymous.text)
        assert anonymous.headers["www-authenticate"].startswith("Bearer")
        for role, token in keys.items():
            answer = api.request(method, url, json=body, headers=bearer(token))
            if role.includes(needed):
                assert answer.status_code not in {401, 403}, (method, path, role, answer.text)
                assert answer.status_code < 500, (method, path, role, answer.text)
            else:
                assert answer.status_code == 403, (method, path, role, answer.text)
                assert answer.json()["code"] == "forbidden"


def test_the_documented_matrix_names_every_route_with_its_role(api: TestClient) -> None:
    assert isinstance(api.app, FastAPI)
    documented: dict[tuple[str, str], str] = {}
    for line in DOC.read_text().splitlines():
        match = _ROW.match(line.strip())
        if match:
            method, path, role = match.groups()
            documented[(method, _shape(path))] = role
    assert documented, "docs/security.md has no authorization matrix rows"
    wrong = {
        f"{method} {path}": (documented.get((method, _shape(path))), needed.value)
        for method, path, route in _v1_routes(api.app)
        if (needed := required_role(route)) is not None
        and documented.get((method, _shape(path))) != needed.value
    }
    assert wrong == {}, "docs/security.md (documented, required) differ"
