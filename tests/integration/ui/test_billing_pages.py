"""Billing downloads and the invoice preview in-process: the export of a range's entries (CSV
and JSON Lines) holds exactly the ledger's rows of the tenant, filtered as the page is; the
invoice preview page and its downloads are the service's preview; bad input is named."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

from fastapi.testclient import TestClient
from tests.integration.api.conftest import IssueKey
from tests.integration.api.pipeline import Source, pipeline
from tests.integration.api.test_ledger_routes import bill

from hartonomous.security.roles import Role
from hartonomous.services import Platform
from hartonomous.services.billing import invoice
from hartonomous.ui.pages.billing import EXPORT_COLUMNS

from .conftest import sign_in

__all__ = ["pipeline"]


def test_the_entries_download_as_csv_and_jsonl_the_tenants_rows_exactly(
    client: TestClient, issue_key: IssueKey, pipeline: Source
) -> None:
    bill(pipeline, "acme", 3)
    bill(pipeline, "globex", 2)
    sign_in(client, issue_key("acme", Role.DATA_SCIENTIST))
    rows = pipeline.conn.execute(
        "SELECT event_id, total_dcu, total_cost FROM billing_usage_ledger "
        "WHERE tenant_id = 'acme' ORDER BY recorded_at, ledger_id"
    ).fetchall()
    as_csv = client.get("/ui/billing/export", params={"format": "csv"})
    assert as_csv.status_code == 200
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert "attachment" in as_csv.headers["content-disposition"]
    table = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert list(table[0]) == list(EXPORT_COLUMNS)
    assert [(r["event_id"], Decimal(r["total_dcu"]), Decimal(r["total_cost"])) for r in table] == [
        (event, dcu, cost) for event, dcu, cost in rows
    ]
    assert {r["tenant_id"] for r in table} == {"acme"}
    as_jsonl = client.get("/ui/billing/export", params={"format": "jsonl"})
    lines = [json.loads(line) for line in as_jsonl.text.splitlines()]
    assert [(e["event_id"], e["total_dcu"]) for e in lines] == [
        (event, format(dcu, "f")) for event, dcu, _ in rows
    ]
    # The page's filters apply; bad input is named beside its field; an unknown format a 400.
    none = client.get("/ui/billing/export", params={"format": "jsonl", "operation": "no.such"})
    assert none.text == ""
    assert client.get("/ui/billing/export", params={"format": "xml"}).status_code == 400
    assert client.get("/ui/billing?cursor=").status_code == 400  # empty: refused, not page 1
    refused = client.get("/ui/billing/export", params={"since": "yesterday"})
    assert refused.status_code == 400
    assert 'id="since-error"' in refused.text
    user = TestClient(client.app)
    sign_in(user, issue_key("acme", Role.USER))
    assert user.get("/ui/billing/export").status_code == 403


def test_the_invoice_preview_is_the_services_and_downloads_as_it(
    client: TestClient, issue_key: IssueKey, pipeline: Source, platform: Platform
) -> None:
    bill(pipeline, "acme", 2)
    sign_in(client, issue_key("acme", Role.USER))  # any role previews its own invoice
    period = pipeline.scalar(
        "SELECT to_char(max(billing_period), 'YYYY-MM') FROM billing_usage_ledger"
    )
    expected = invoice(platform, "acme", period, across_tenants=True)
    page = client.get("/ui/billing/invoice", params={"period": period})
    assert page.status_code == 200
    assert f'id="invoice-total">{expected.as_json()["total"]}<' in page.text
    assert page.text.count("<td>usage</td>") == sum(line.kind == "usage" for line in expected.lines)
    as_csv = client.get("/ui/billing/invoice", params={"period": period, "format": "csv"})
    assert as_csv.text == expected.to_csv()
    as_json = client.get("/ui/billing/invoice", params={"period": period, "format": "json"})
    assert as_json.text == expected.to_json()
    for params in ({"period": "2026-13"}, {"period": "3000-01"}, {"period": period, "format": "x"}):
        refused = client.get("/ui/billing/invoice", params=params)
        assert refused.status_code == 400, params
        assert 'id="period-error"' in refused.text
