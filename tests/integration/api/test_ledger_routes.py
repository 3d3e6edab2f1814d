"""`GET /v1/ledger/entries`: billed events of the caller's tenant, filtered and paginated."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from fastapi.testclient import TestClient
from tests.integration.sync.conftest import drain

from hartonomous.api.problems import PROBLEM_MEDIA_TYPE
from hartonomous.config import Settings
from hartonomous.security.roles import Role

from .conftest import IssueKey, bearer
from .pipeline import Source, all_pages, pipeline

__all__ = ["pipeline"]


def bill(source: Source, tenant: str, holdings: int) -> None:
    """``holdings`` billed events of ``tenant``: ingested, captured, drained by the worker."""
    source.tenant(tenant, f"{tenant}-user")
    source.ingest(tenant, holdings, principal_id=f"{tenant}-user")
    source.capture()
    assert drain(source, Settings()).billed == holdings


def test_a_data_scientist_sees_its_tenants_entries_with_money_as_decimal_strings(
    api: TestClient, issue_key: IssueKey, pipeline: Source
) -> None:
    bill(pipeline, "acme", 2)
    key = bearer(issue_key(tenant="acme", role=Role.DATA_SCIENTIST))
    answer = api.get("/v1/ledger/entries", headers=key)
    assert answer.status_code == 200, answer.text
    page = answer.json()
    assert page["next_cursor"] is None
    assert len(page["items"]) == 2
    for entry in page["items"]:
        assert entry["tenant_id"] == "acme"
        assert entry["principal_id"] == "acme-user"
        assert entry["operation"] == "neo4j_sync.ingest_completed"
        # Exact NUMERIC(18,6) text, never a float.
        assert entry["total_dcu"] == "0.018000"
        assert entry["unit_price"] == "0.000080"
        assert entry["total_cost"] == "0.000001"
        assert Decimal(entry["units"]) == Decimal(1)
        # Numbers inside metadata too (a unit price is money): decimal strings, never floats.
        numbers = [v for v in entry["metadata"].values() if not isinstance(v, (str, bool))]
        assert not [v for v in numbers if isinstance(v, float)], entry["metadata"]
    stored = {
        str(row[0])
        for row in pipeline.conn.execute("SELECT ledger_id FROM billing_usage_ledger").fetchall()
    }
    assert {entry["ledger_id"] for entry in page["items"]} == stored


def test_tenant_b_never_sees_tenant_a_entries(
    api: TestClient, issue_key: IssueKey, pipeline: Source
) -> None:
    bill(pipeline, "acme", 2)
    bill(pipeline, "globex", 1)
    key_b = bearer(issue_key(tenant="globex", role=Role.DATA_SCIENTIST))
    own = api.get("/v1/ledger/entries", headers=key_b).json()["items"]
    assert [entry["tenant_id"] for entry in own] == ["globex"]
    asked = api.get("/v1/ledger/entries?tenant_id=acme", headers=key_b)
    assert asked.status_code == 404
    assert asked.headers["content-type"] == PROBLEM_MEDIA_TYPE
    # A cursor issued to A's listing does not open A's entries to B either.
    key_a = bearer(issue_key(tenant="acme", role=Role.DATA_SCIENTIST))
    cursor = api.get("/v1/ledger/entries?limit=1", headers=key_a).json()["next_cursor"]
    assert cursor is not None
    replayed = api.get(f"/v1/ledger/entries?limit=1&cursor={cursor}", headers=key_b)
    assert replayed.status_code == 400
    assert replayed.json()["code"] == "invalid-cursor"


def test_an_admin_sees_every_tenant_or_filters_one(
    api: TestClient, issue_key: IssueKey, pipeline: Source
) -> None:
    bill(pipeline, "acme", 2)
    bill(pipeline, "globex", 1)
    admin = bearer(issue_key(tenant="ops", role=Role.ADMIN))
    everything = api.get("/v1/ledger/entries", headers=admin).json()["items"]
    assert sorted(entry["tenant_id"] for entry in everything) == ["acme", "acme", "globex"]
    acme = api.get("/v1/ledger/entries?tenant_id=acme", headers=admin).json()["items"]
    assert [entry["tenant_id"] for entry in acme] == ["acme", "acme"]
    user = api.get("/v1/ledger/entries", headers=bearer(issue_key(role=Role.USER)))
    assert user.status_code == 403


def test_a_tenant_id_parameter_is_checked_as_every_tenant_id_is(
    api: TestClient, issue_key: IssueKey
) -> None:
    """Malformed: 422 naming `query.tenant_id`; unknown to an admin, or another tenant's to a
    data scientist: 404, on the entries as on the report (as `/v1/tenants/{tenant_id}/…`)."""
    admin = bearer(issue_key(tenant="ops", role=Role.ADMIN))
    scientist = bearer(issue_key(tenant="acme", role=Role.DATA_SCIENTIST))
    report = "/v1/ledger/report?since=2026-01-01&until=2026-02-01&"
    for path in ("/v1/ledger/entries?", report):
        for key in (admin, scientist):
            malformed = api.get(f"{path}tenant_id=not%20a%20tenant!", headers=key)
            assert malformed.status_code == 422, (path, malformed.text)
            assert [e["field"] for e in malformed.json()["errors"]] == ["query.tenant_id"]
        unknown = api.get(f"{path}tenant_id=no-such-tenant", headers=admin)
        assert unknown.status_code == 404, (path, unknown.text)
        assert "no-such-tenant" in unknown.json()["detail"]
        other = api.get(f"{path}tenant_id=ops", headers=scientist)
        assert other.status_code == 404, (path, other.text)


def test_entries_page_beyond_one_page_newest_first_and_refuse_a_tampered_cursor(
    api: TestClient, issue_key: IssueKey, pipeline: Source
) -> None:
    bill(pipeline, "acme", 5)
    key = bearer(issue_key(tenant="acme", role=Role.DATA_SCIENTIST))
    seen, pages = all_pages(api, "/v1/ledger/entries?limit=2", key)
    assert pages == 3
    assert len({entry["ledger_id"] for entry in seen}) == 5
    order = [(entry["recorded_at"], entry["ledger_id"]) for entry in seen]
    assert order == sorted(order, reverse=True)
    first = api.get("/v1/ledger/entries?limit=2", headers=key).json()["next_cursor"]
    body, signature = first.split(".")
    tampered = body + "." + signature[:-2] + ("AA" if not signature.endswith("AA") else "BB")
    answer = api.get(f"/v1/ledger/entries?limit=2&cursor={tampered}", headers=key)
    assert answer.status_code == 400
    assert answer.json()["code"] == "invalid-cursor"


def test_filters_by_operation_principal_and_time(
    api: TestClient, issue_key: IssueKey, pipeline: Source
) -> None:
    bill(pipeline, "acme", 1)
    bill(pipeline, "acme", 1)  # a later transaction: a later recorded_at
    key = bearer(issue_key(tenant="acme", role=Role.DATA_SCIENTIST))
    newer, older = api.get("/v1/ledger/entries", headers=key).json()["items"]
    assert newer["recorded_at"] > older["recorded_at"]
    at = newer["recorded_at"].replace("+", "%2B")
    for query, expected in (
        ("operation=neo4j_sync.ingest_completed", [newer, older]),
        ("operation=embed", []),
        ("principal_id=acme-user", [newer, older]),
        ("principal_id=nobody", []),
        (f"recorded_since={at}", [newer]),
        (f"recorded_before={at}", [older]),
    ):
        answer = api.get(f"/v1/ledger/entries?{query}", headers=key)
        assert answer.status_code == 200, (query, answer.text)
        assert answer.json()["items"] == expected, query


def test_a_cursor_replayed_with_other_filters_is_refused_naming_the_cursor(
    api: TestClient, issue_key: IssueKey, pipeline: Source
) -> None:
    bill(pipeline, "acme", 3)
    key = bearer(issue_key(tenant="acme", role=Role.DATA_SCIENTIST))
    listing = "/v1/ledger/entries?operation=neo4j_sync.ingest_completed"
    cursor = api.get(f"{listing}&limit=1", headers=key).json()["next_cursor"]
    # The same filters resume, whatever the page size.
    assert api.get(f"{listing}&limit=5&cursor={cursor}", headers=key).status_code == 200
    for changed in (
        "/v1/ledger/entries?operation=embed",
        "/v1/ledger/entries?limit=1",  # a filter dropped
        f"{listing}&principal_id=acme-user",  # a filter added
        f"{listing}&recorded_before=2100-01-01T00:00:00Z",
    ):
        answer = api.get(f"{changed}&cursor={cursor}", headers=key)
        assert answer.status_code == 400, (changed, answer.text)
        assert answer.json()["code"] == "invalid-cursor"
        assert answer.json()["detail"] == (
            "the cursor was made for other filters; start again without it"
        )


def test_bad_filters_are_problems_naming_the_field(api: TestClient, issue_key: IssueKey) -> None:
    key = bearer(issue_key(tenant="acme", role=Role.DATA_SCIENTIST))
    for query, field in (
        ("recorded_since=yesterday", "query.recorded_since"),
        ("recorded_since=2026-01-31T12:00:00", "query.recorded_since"),
        ("limit=0", "query.limit"),
        ("tenant_id=", "query.tenant_id"),
    ):
        answer = api.get(f"/v1/ledger/entries?{query}", headers=key)
        assert answer.status_code == 422, query
        assert answer.headers["content-type"] == PROBLEM_MEDIA_TYPE
        assert field in [error["field"] for error in answer.json()["errors"]], query
    # NUL in any query parameter is refused before routing (api/middleware.py).
    nul = api.get("/v1/ledger/entries?operation=a%00b", headers=key)
    assert nul.status_code == 400
    assert "operation" in nul.json()["detail"]
    for edge in ("0001-01-01T00:00:00%2B14:00", "9999-12-31T23:59:59-14:00"):
        for name in ("recorded_since", "recorded_before"):
            answer = api.get(f"/v1/ledger/entries?{name}={edge}", headers=key)
            assert answer.status_code == 200, (name, edge, answer.text)
    empty = api.get(
        "/v1/ledger/entries?recorded_since=2026-02-01T00:00:00%2B00:00"
        "&recorded_before=2026-01-01T00:00:00%2B00:00",
        headers=key,
    )
    assert empty.status_code == 400
    assert "recorded_since must be before recorded_before" in empty.json()["detail"]


def test_the_usage_report_through_the_real_pipeline_is_scoped_and_exact(
    api: TestClient, issue_key: IssueKey, pipeline: Source
) -> None:
    """Events billed by the sync worker reach the report through the rollup's trigger."""
    bill(pipeline, "acme", 3)
    bill(pipeline, "globex", 2)
    today = datetime.now(UTC).date()
    window = {"since": today.isoformat(), "until": (today + timedelta(days=1)).isoformat()}
    own = bearer(issue_key(tenant="acme", role=Role.DATA_SCIENTIST))
    answer = api.get("/v1/ledger/report", headers=own, params={**window, "group_by": "tenant"})
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert [(r["tenant"], r["rows"]) for r in report["rows"]] == [("acme", 3)]
    assert report["total"]["total_cost"] == "0.000003"  # three rows of 0.000001, exact
    other = api.get("/v1/ledger/report", headers=own, params={**window, "tenant_id": "globex"})
    assert other.status_code == 404
    admin = bearer(issue_key(tenant="acme", role=Role.ADMIN))
    every = api.get(
        "/v1/ledger/report",
        headers=admin,
        params={**window, "group_by": ["tenant", "operation"], "format": "csv"},
    )
    assert every.status_code == 200, every.text
    assert every.headers["content-type"].startswith("text/csv")
    assert every.text.splitlines() == [
        "tenant,operation,rows,units,total_dcu,total_cost",
        "acme,neo4j_sync.ingest_completed,3,3.000000,0.054000,0.000003",
        "globex,neo4j_sync.ingest_completed,2,2.000000,0.036000,0.000002",
        "total,total,5,5.000000,0.090000,0.000005",
    ]
    for bad in ({"since": "1700000000", "until": window["until"]}, {**window, "group_by": "x"}):
        refused = api.get("/v1/ledger/report", headers=admin, params=bad)
        assert refused.status_code == 422, bad
        assert refused.headers["content-type"] == PROBLEM_MEDIA_TYPE
