"""Authentication answers 401 with WWW-Authenticate; roles answer 403; errors are problems."""

from __future__ import annotations

from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from hartonomous.api.auth import Caller, requires
from hartonomous.api.problems import PROBLEM_MEDIA_TYPE
from hartonomous.security.roles import Role

from .conftest import IssueKey, bearer


def _with_probe(client: TestClient) -> TestClient:
    app = client.app
    assert isinstance(app, FastAPI)

    @app.get("/probe/admin")
    def probe(caller: Caller = Depends(requires(Role.ADMIN))) -> dict[str, str]:  # noqa: B008
        return {"tenant": caller.tenant_id, "role": caller.role.value}

    return client


def test_a_missing_or_unknown_key_is_401_problem_with_www_authenticate(
    api: TestClient, issue_key: IssueKey
) -> None:
    client = _with_probe(api)
    token = issue_key(role=Role.ADMIN)
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    for headers in ({}, bearer("hk_nothing"), bearer(forged), {"Authorization": "Basic eDp5"}):
        answer = client.get("/probe/admin", headers=headers)
        assert answer.status_code == 401, headers
        assert answer.headers["content-type"] == PROBLEM_MEDIA_TYPE
        assert answer.headers["www-authenticate"].startswith("Bearer")
        body = answer.json()
        assert body["status"] == 401
        assert body["code"] == "not-authenticated"
        assert body["request_id"] == answer.headers["x-request-id"]
        # The whole secret (it may itself hold `_`): a fragment could occur in any id by chance.
        assert token.split("_", 2)[2] not in answer.text


def test_a_role_below_the_routes_need_is_403_and_admin_passes(
    api: TestClient, issue_key: IssueKey
) -> None:
    client = _with_probe(api)
    for role in (Role.USER, Role.DATA_SCIENTIST):
        answer = client.get("/probe/admin", headers=bearer(issue_key(role=role)))
        assert answer.status_code == 403
        assert answer.json()["code"] == "forbidden"
    answer = client.get("/probe/admin", headers=bearer(issue_key(role=Role.ADMIN)))
    assert answer.status_code == 200
    assert answer.json() == {"tenant": "acme", "role": "admin"}


def test_an_unknown_path_is_a_problem_not_html(api: TestClient) -> None:
    answer = api.get("/v1/no-such-thing")
    assert answer.status_code == 404
    assert answer.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert answer.json()["instance"] == "/v1/no-such-thing"


def test_a_405_allows_every_method_of_the_path_and_a_trailing_slash_is_not_redirected(
    api: TestClient, issue_key: IssueKey
) -> None:
    admin = bearer(issue_key(role=Role.ADMIN))
    # GET and POST /v1/tenants are two routes: Allow names both (and HEAD, taken with GET).
    answer = api.put("/v1/tenants", headers=admin)
    assert answer.status_code == 405
    assert answer.headers["allow"] == "GET, HEAD, POST"
    assert answer.headers["content-type"] == PROBLEM_MEDIA_TYPE
    # No redirect built from the Host header: the slashed path is simply not a route.
    slashed = api.get(
        "/v1/holdings/", headers=admin | {"Host": "evil.example"}, follow_redirects=False
    )
    assert slashed.status_code == 404
    assert "location" not in slashed.headers
