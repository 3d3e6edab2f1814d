"""`GET /v1/me`: each key answers with its own tenant and principal, read under its tenant."""

from __future__ import annotations

from fastapi.testclient import TestClient

from hartonomous.security.roles import Role

from .conftest import IssueKey, bearer


def test_me_answers_each_callers_own_identity(api: TestClient, issue_key: IssueKey) -> None:
    keys = {
        ("acme", Role.ADMIN): issue_key(tenant="acme", role=Role.ADMIN, principal="ada"),
        ("globex", Role.USER): issue_key(tenant="globex", role=Role.USER, principal="bob"),
    }
    for (tenant, role), token in keys.items():
        answer = api.get("/v1/me", headers=bearer(token))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["tenant_id"], body["tenant_name"], body["role"]) == (
            tenant,
            tenant,
            role.value,
        )
        assert body["principal_id"] == body["principal_name"]
        assert body["key_id"] in token
    assert api.get("/v1/me").status_code == 401
