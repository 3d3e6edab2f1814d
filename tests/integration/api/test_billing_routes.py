"""`/v1/billing/plans...` (admin only) and `GET /v1/billing/invoice` (a tenant's own; an admin
names any tenant): problems for every refusal, the same bytes as the command line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from tests.integration.billing import invoice_scenario as scenario

from hartonomous.api.problems import PROBLEM_MEDIA_TYPE
from hartonomous.config import Settings
from hartonomous.security.roles import Role

from .conftest import IssueKey, bearer

GOLDEN = Path(__file__).parents[2] / "data" / "invoice"


def _later(hours: float) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).isoformat()


@pytest.mark.parametrize("role", [Role.USER, Role.DATA_SCIENTIST])
def test_plans_are_for_admins_only(api: TestClient, issue_key: IssueKey, role: Role) -> None:
    key = bearer(issue_key(role=role))
    for method, path in (
        ("GET", "/v1/billing/plans"),
        ("POST", "/v1/billing/plans"),
        ("GET", "/v1/billing/plans/pro"),
        ("PATCH", "/v1/billing/plans/pro"),
        ("POST", "/v1/billing/plans/pro/deactivate"),
    ):
        answer = api.request(method, path, headers=key, json={})
        assert answer.status_code == 403, (method, path, answer.text)
        assert answer.headers["content-type"] == PROBLEM_MEDIA_TYPE


def test_an_admin_creates_changes_and_deactivates_a_plan(
    api: TestClient, issue_key: IssueKey
) -> None:
    key = bearer(issue_key(role=Role.ADMIN))
    created = api.post(
        "/v1/billing/plans",
        headers=key,
        json={
            "plan_code": "pro",
            "name": "Pro",
            "tenant_id": "acme",
            "monthly_fee": "99.5",
            "rates": [{"operation": "usage.api_call", "rate": "0.02", "unit_of_measure": "call"}],
            "multipliers": [{"dimension": "generation", "key": "image", "multiplier": "3"}],
            "effective_from": _later(1),
        },
    )
    assert created.status_code == 201, created.text
    assert created.json()["monthly_fee"] == "99.500000"
    changed = api.patch(
        "/v1/billing/plans/pro?tenant_id=acme",
        headers=key,
        json={
            "rates": [{"operation": "usage.api_call", "rate": "0.03"}],
            "effective_from": _later(2),
        },
    )
    assert changed.status_code == 200, changed.text
    off = api.post(
        "/v1/billing/plans/pro/deactivate?tenant_id=acme",
        headers=key,
        json={"effective_from": _later(3)},
    )
    assert off.status_code == 200, off.text
    assert off.json()["changed"] is True
    shown = api.get("/v1/billing/plans/pro?tenant_id=acme", headers=key).json()["versions"]
    assert [(v["rates"][0]["rate"], v["is_active"]) for v in shown] == [
        ("0.020000", True),
        ("0.030000", True),
        ("0.030000", False),
    ]
    listed = api.get("/v1/billing/plans?tenant_id=acme", headers=key).json()["items"]
    assert [(p["plan_code"], p["versions"]) for p in listed] == [("pro", 3)]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "detail"),
    [
        ("PATCH", "/v1/billing/plans/ghost", {"monthly_fee": "1"}, 404, "no plan 'ghost'"),
        ("PATCH", "/v1/billing/plans/pro", {"monthly_fee": "-1"}, 400, "is negative"),
        ("PATCH", "/v1/billing/plans/pro", {"monthly_fee": "lots"}, 422, "monthly_fee"),
        ("PATCH", "/v1/billing/plans/pro", {"remove_rates": ["nope"]}, 400, "'nope'"),
        ("PATCH", "/v1/billing/plans/pro", {"effective_from": "2026-01-01T00:00:00Z"}, 400,
         "too early"),
        ("POST", "/v1/billing/plans", {"plan_code": "pro", "name": "Pro"}, 409, "exists"),
        # Checked even when the plan is already active and nothing would be written.
        ("POST", "/v1/billing/plans/pro/activate",
         {"effective_from": "0001-01-01T00:00:00+01:00"}, 400, "effective_from"),
        ("POST", "/v1/billing/plans/pro/activate", {"effective_from": "2026-01-01T00:00:00Z"},
         400, "too early"),
    ],
)  # fmt: skip
def test_bad_plan_requests_are_problems_and_write_nothing(
    api: TestClient,
    issue_key: IssueKey,
    *,
    method: str,
    path: str,
    body: dict[str, object],
    status: int,
    detail: str,
) -> None:
    key = bearer(issue_key(role=Role.ADMIN))
    assert (
        api.post(
            "/v1/billing/plans",
            headers=key,
            json={"plan_code": "pro", "name": "Pro", "rates": [{"operation": "x", "rate": "1"}]},
        ).status_code
        == 201
    )
    answer = api.request(method, path, headers=key, json=body)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert detail in answer.text
    versions = api.get("/v1/billing/plans/pro", headers=key).json()["versions"]
    assert len(versions) == 1


def test_a_tenant_previews_its_own_invoice_and_an_admin_any(
    api: TestClient, issue_key: IssueKey, engine: Engine
) -> None:
    scenario.seed(engine, Settings().billing)
    # One of the scenario's active principals: the seat count stays that of the golden file.
    user = bearer(issue_key(tenant="acme", role=Role.USER, principal="ann"))
    own = api.get("/v1/billing/invoice", params={"period": scenario.PERIOD}, headers=user)
    assert own.status_code == 200, own.text
    # The same bytes as the command line's golden preview.
    assert own.content == (GOLDEN / f"acme-{scenario.PERIOD}.json").read_bytes()
    as_csv = api.get(
        "/v1/billing/invoice", params={"period": scenario.PERIOD, "format": "csv"}, headers=user
    )
    assert as_csv.content == (GOLDEN / f"acme-{scenario.PERIOD}.csv").read_bytes()
    other = api.get(
        "/v1/billing/invoice",
        params={"period": scenario.PERIOD, "tenant_id": "globex"},
        headers=user,
    )
    assert other.status_code == 404
    admin = bearer(issue_key(tenant="ops", role=Role.ADMIN))
    named = api.get(
        "/v1/billing/invoice",
        params={"period": scenario.PERIOD, "tenant_id": "acme"},
        headers=admin,
    )
    assert named.content == own.content
    for params, status in (
        ({"period": "2999-01"}, 400),
        ({"period": "2026-1"}, 422),  # not a month: malformed, as every such value
        ({"period": "2026-13"}, 422),
        ({"period": scenario.PERIOD, "tenant_id": "nobody"}, 404),
    ):
        answer = api.get("/v1/billing/invoice", params=params, headers=admin)
        assert answer.status_code == status, answer.text
        assert answer.headers["content-type"] == PROBLEM_MEDIA_TYPE
