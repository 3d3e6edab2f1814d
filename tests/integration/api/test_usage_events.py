"""`POST /v1/usage-events` through the real broker and sync worker into the ledger, and the
close of a billing period (docs/billing.md, "Usage events" and "Monthly close")."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from hartonomous.config import Settings
from hartonomous.security.roles import Role
from hartonomous.services import Platform
from hartonomous.services.ledger import ReportGrouping, ledger_report
from hartonomous.services.ledger_close import close_ledger_period
from hartonomous.services.usage_events import prune_usage_event_receipts
from hartonomous.sync.worker import SyncWorker

from .conftest import UNLIMITED, IssueKey, bearer

SINGLE = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
API_CALL = "usage.api_call"
STORAGE = "usage.storage_gb_hour"
GPU = "usage.gpu_hour"


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return Settings.model_validate(
        {
            "data_dir": data_dir,
            "security": {"rate_limits": [UNLIMITED]},
            "billing": {
                "operation_rates": {API_CALL: "0.5", STORAGE: "0.002", GPU: "4"},
                "usage_event_batch_limit": 5,
            },
        }
    )


def _first_of_month(moment: datetime) -> datetime:
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


NOW = datetime.now(UTC)
THIS_PERIOD = _first_of_month(NOW)
LAST_PERIOD = _first_of_month(THIS_PERIOD - timedelta(days=1))
IN_LAST_PERIOD = LAST_PERIOD + timedelta(days=3, hours=5)


def event(
    event_id: str,
    units: Any = 2,
    *,
    operation: str = API_CALL,
    time: datetime = NOW,
    source: str = "//billing.example/gateway",
    **data: Any,
) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": operation,
        "time": time.isoformat(),
        "data": {"units": units, **data},
    }


def post(api: TestClient, token: str, body: Any, content_type: str = BATCH) -> Any:
    raw = body if isinstance(body, str) else json.dumps(body)
    return api.post(
        "/v1/usage-events",
        content=raw,
        headers={**bearer(token), "Content-Type": content_type},
    )


Drain = Callable[[], None]


@pytest.fixture
def drain(database_url: str, settings: Settings) -> Drain:
    """What `sync --once` does: a real sync worker handles what the broker holds now."""

    def run() -> None:
        worker = SyncWorker(database_url, settings)
        try:
            worker.drain()
        finally:
            worker.close()

    return run


def rows(engine: Engine, tenant: str = "acme") -> list[dict[str, Any]]:
    with engine.connect() as connection:
        return [
            dict(row)
            for row in connection.execute(
                text(
                    "SELECT event_id, operation, units, total_dcu, billing_period, adjusts_period, "
                    "metadata->>'cloudevent_id' AS cloudevent_id FROM billing_usage_ledger "
                    "WHERE tenant_id = :tenant ORDER BY metadata->>'cloudevent_id'"
                ),
                {"tenant": tenant},
            ).mappings()
        ]


def count(engine: Engine, table: str) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_the_same_batch_twice_bills_each_event_once(
    api: TestClient, issue_key: IssueKey, engine: Engine, drain: Drain
) -> None:
    token = issue_key("acme")
    batch = [event("e-1", 3), event("e-2", "0.1"), event("e-3", 1, operation=STORAGE)]
    first = post(api, token, batch)
    assert first.status_code == 200, first.text
    assert [r["status"] for r in first.json()["results"]] == ["accepted"] * 3
    assert count(engine, "broker_messages") == 3  # through the broker, not straight in
    assert rows(engine) == []
    drain()
    again = post(api, token, batch)
    assert again.json()["duplicate"] == 3
    assert [r["status"] for r in again.json()["results"]] == ["duplicate"] * 3
    assert count(engine, "broker_messages") == 0
    drain()
    billed = rows(engine)
    assert [r["cloudevent_id"] for r in billed] == ["e-1", "e-2", "e-3"]
    # Units exact from the JSON text (0.1 is not a float's 0.1000000000000000055…).
    assert [r["units"] for r in billed] == [Decimal(3), Decimal("0.1"), Decimal(1)]
    assert billed[0]["total_dcu"] == Decimal("1.5")  # 3 units x 0.5
    assert {r["billing_period"] for r in billed} == {THIS_PERIOD.date()}


def test_a_resend_after_the_receipt_is_forgotten_is_still_billed_once(
    api: TestClient,
    issue_key: IssueKey,
    engine: Engine,
    drain: Drain,
    platform: Platform,
) -> None:
    token = issue_key("acme")
    post(api, token, [event("old", 4)])
    drain()
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE billing_usage_event_receipts SET received_at = now() - interval '36 days'")
        )
    assert prune_usage_event_receipts(platform) == 1
    resent = post(api, token, [event("old", 4)])
    assert resent.json()["accepted"] == 1  # forgotten: accepted again ...
    drain()
    assert len(rows(engine)) == 1  # ... and the ledger's unique event id bills it once


def test_a_duplicate_within_one_batch_and_other_tenants_same_ids(
    api: TestClient, issue_key: IssueKey, engine: Engine, drain: Drain
) -> None:
    acme, globex = issue_key("acme"), issue_key("globex")
    answer = post(api, acme, [event("x", 1), event("x", 1)]).json()
    assert [r["status"] for r in answer["results"]] == ["accepted", "duplicate"]
    # Idempotency is per tenant: the same source and id from another tenant is its own event.
    assert post(api, globex, [event("x", 1)]).json()["accepted"] == 1
    # Ids and sources of any shape are remembered as sent: a resend is a duplicate.
    awkward = [
        event('q"uote', 1, source="//gw/{brace},comma"),
        event("back\\slash", 1, source='//gw/ü "q"'),
        event("NULL", 1, source="//gw/tab\tnewline\n"),
    ]
    assert post(api, acme, awkward).json()["accepted"] == 3
    assert post(api, acme, awkward).json()["duplicate"] == 3
    drain()
    assert len(rows(engine, "acme")) == 4
    assert len(rows(engine, "globex")) == 1


def test_a_single_event_answers_202_then_200(
    api: TestClient, issue_key: IssueKey, engine: Engine
) -> None:
    token = issue_key("acme")
    first = post(api, token, event("one"), SINGLE)
    assert first.status_code == 202, first.text
    assert first.json()["results"][0]["status"] == "accepted"
    second = post(api, token, event("one"), SINGLE)
    assert second.status_code == 200
    assert second.json()["results"][0]["status"] == "duplicate"


BAD_EVENTS = [
    ({k: v for k, v in event("b").items() if k != "id"}, "id"),
    ({k: v for k, v in event("b").items() if k != "source"}, "source"),
    ({k: v for k, v in event("b").items() if k != "type"}, "type"),
    ({k: v for k, v in event("b").items() if k != "time"}, "time"),
    ({**event("b"), "time": "yesterday"}, "RFC 3339"),
    ({**event("b"), "time": "2026-01-05T10:00:00"}, "offset"),
    ({**event("b"), "time": (NOW + timedelta(days=2)).isoformat()}, "future"),
    # Valid RFC 3339, but with no UTC value in years 1-9999.
    ({**event("b"), "time": "0001-01-01T00:00:00+14:00"}, "outside the years 0001-9999"),
    ({**event("b"), "time": "9999-12-31T23:59:59-14:00"}, "outside the years 0001-9999"),
    ({**event("b"), "specversion": "0.3"}, "specversion"),
    (event("b", operation="usage.unknown"), "unknown operation 'usage.unknown'"),
    (event("b", -1), "greater than 0"),
    (event("b", 0), "greater than 0"),
    (event("b", "lots"), "not a number"),
    (event("b", True), "must be a number"),
    (event("b", "1.0000001"), "at most 6 decimals"),
    (event("b", "1e15"), "integer digits"),
    # Units fit, but 4 DCU each make a total_dcu of 13 integer digits.
    (event("b", "999999999999", operation=GPU), "cannot be billed"),
    ({**event("b"), "data": {"count": 3}}, "data.units is missing"),
    ({**event("b"), "data": [1]}, "data must be a JSON object"),
    ({**event("b"), "datacontenttype": "text/plain"}, "datacontenttype"),
    ("not an object", "JSON object"),
]


def test_each_bad_event_is_rejected_with_its_reason_and_nothing_is_written(
    api: TestClient, issue_key: IssueKey, engine: Engine
) -> None:
    token = issue_key("acme")
    for body, reason in BAD_EVENTS:
        answer = post(api, token, [body, event("good")])
        assert answer.status_code == 200, answer.text
        bad, good = answer.json()["results"]
        assert bad["status"] == "rejected", (body, bad)
        assert reason in bad["reason"], (reason, bad["reason"])
        assert good["status"] in ("accepted", "duplicate")
    assert count(engine, "broker_messages") == 1  # only the good one, once
    assert count(engine, "billing_usage_event_receipts") == 1
    # Large usage whose cost still fits is accepted (the meter decides, not a rough bound).
    large = post(api, token, [event("large", "249999999999", operation=GPU)]).json()
    assert large["accepted"] == 1, large


def test_a_single_rejected_event_is_a_400_problem(api: TestClient, issue_key: IssueKey) -> None:
    answer = post(api, issue_key("acme"), event("neg", "-2.5"), SINGLE)
    assert answer.status_code == 400
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert "greater than 0" in answer.json()["detail"]


def test_bad_requests_are_refused_whole(
    api: TestClient, issue_key: IssueKey, engine: Engine
) -> None:
    token = issue_key("acme")
    too_many = post(api, token, [event(f"n{n}") for n in range(6)])
    assert too_many.status_code == 413
    assert "usage_event_batch_limit" in too_many.json()["detail"]
    wrong_type = post(api, token, [event("w")], "application/json")
    assert wrong_type.status_code == 415
    assert BATCH in wrong_type.json()["detail"]
    assert post(api, token, event("w"), BATCH).status_code == 400  # an object, not an array
    assert post(api, token, [event("w")], SINGLE).status_code == 400  # an array, not an object
    assert post(api, token, [], BATCH).status_code == 400
    broken = post(api, token, '[{"id": ', BATCH)
    assert broken.status_code == 422
    assert "not valid JSON" in broken.json()["errors"][0]["message"]
    assert post(api, "hk_wrong", [event("w")]).status_code == 401
    assert count(engine, "broker_messages") == 0
    assert count(engine, "billing_usage_event_receipts") == 0


def test_a_late_event_is_billed_in_its_own_open_period(
    api: TestClient, issue_key: IssueKey, engine: Engine, drain: Drain
) -> None:
    post(api, issue_key("acme"), [event("late", 2, time=IN_LAST_PERIOD)])
    drain()
    (row,) = rows(engine)
    assert row["billing_period"] == LAST_PERIOD.date()
    assert row["adjusts_period"] is None


def test_close_is_refused_while_queued_then_idempotent_and_late_events_become_adjustments(
    api: TestClient,
    issue_key: IssueKey,
    engine: Engine,
    drain: Drain,
    platform: Platform,
) -> None:
    token = issue_key("acme")
    last = f"{LAST_PERIOD:%Y-%m}"
    post(api, token, [event("a", 2, time=IN_LAST_PERIOD), event("b", 1, time=IN_LAST_PERIOD)])
    admin = bearer(issue_key("acme", Role.ADMIN))
    refused = api.post(f"/v1/ledger/periods/{last}/close", headers=admin)
    assert refused.status_code == 409
    assert "2 event(s)" in refused.json()["detail"]
    assert count(engine, "billing_closed_periods") == 0

    drain()
    closed = api.post(f"/v1/ledger/periods/{last}/close", headers=admin)
    assert closed.status_code == 200, closed.text
    assert closed.json()["closed_now"] is True
    assert closed.json()["rows"] == 2
    again = close_ledger_period(platform, last)
    assert again.checksum == closed.json()["checksum"]
    assert again.closed_now is False

    post(api, token, [event("c", 5, time=IN_LAST_PERIOD)])
    drain()
    late = next(r for r in rows(engine) if r["cloudevent_id"] == "c")
    assert late["billing_period"] == THIS_PERIOD.date()
    assert late["adjusts_period"] == LAST_PERIOD.date()
    # The closed period's totals did not move: closing again reports the same checksum.
    assert close_ledger_period(platform, last).checksum == again.checksum
    report = ledger_report(
        platform,
        since=THIS_PERIOD.date(),
        until=(THIS_PERIOD + timedelta(days=32)).date(),
        group_by=(ReportGrouping.TENANT,),
        tenant_id="acme",
        across_tenants=True,
    )
    (adjustment,) = report.adjustments
    assert adjustment.adjusts_period == LAST_PERIOD.date()
    assert adjustment.billing_period == THIS_PERIOD.date()
    assert adjustment.row_count == 1
    assert adjustment.total_dcu == Decimal("2.5")
    assert report.as_json()["adjustments"][0]["adjusts_period"] == last
    # CSV: after the totals, an empty line, `adjustments` and their own table.
    lines = report.as_csv().splitlines()
    at = lines.index("adjustments")
    assert lines[at - 1] == ""
    assert lines[at + 2].startswith(f"{THIS_PERIOD:%Y-%m},{last},acme,{API_CALL},1,5.000000,")


def test_close_refuses_bad_periods_and_non_admins(
    api: TestClient, issue_key: IssueKey, engine: Engine
) -> None:
    admin = bearer(issue_key("acme", Role.ADMIN))
    this = api.post(f"/v1/ledger/periods/{THIS_PERIOD:%Y-%m}/close", headers=admin)
    assert this.status_code == 400
    assert "has not ended" in this.json()["detail"]
    future = (THIS_PERIOD + timedelta(days=40)).date()
    assert api.post(f"/v1/ledger/periods/{future:%Y-%m}/close", headers=admin).status_code == 400
    # Not a month at all: malformed, a 422 naming the parameter (docs/api.md, "Errors").
    for malformed in ("2026-13", "2026-1", "26-01"):
        answer = api.post(f"/v1/ledger/periods/{malformed}/close", headers=admin)
        assert answer.status_code == 422, malformed
        assert [error["field"] for error in answer.json()["errors"]] == ["path.period"]
    user = bearer(issue_key("acme", Role.DATA_SCIENTIST))
    assert (
        api.post(f"/v1/ledger/periods/{LAST_PERIOD:%Y-%m}/close", headers=user).status_code == 403
    )
    assert count(engine, "billing_closed_periods") == 0


def test_an_event_the_plan_no_longer_prices_is_dead_lettered_not_billed(
    api: TestClient, issue_key: IssueKey, engine: Engine, database_url: str
) -> None:
    post(api, issue_key("acme"), [event("dropped", 2, operation=STORAGE)])
    # The plan changed between acceptance and billing: STORAGE is no longer priced.
    worker = SyncWorker(
        database_url,
        Settings.model_validate({"billing": {"operation_rates": {API_CALL: "0.5"}}}),
    )
    try:
        outcome = worker.drain()
    finally:
        worker.close()
    assert outcome.dead_lettered == 1
    assert rows(engine) == []
    with engine.connect() as connection:
        reason, detail = connection.execute(
            text("SELECT reason, exception_message FROM message_dead_letters")
        ).one()
    assert reason == "unknown_operation"
    assert STORAGE in detail


def test_a_late_event_is_priced_by_the_plan_version_in_force_at_its_time(
    api: TestClient, issue_key: IssueKey, engine: Engine, drain: Drain
) -> None:
    # Two versions of acme's plan, the second in force since yesterday (written here directly:
    # the plan commands only schedule versions ahead of now).
    changed = NOW - timedelta(days=1)
    token = issue_key("acme")  # creates the tenant
    with engine.begin() as connection:
        for effective_from, rate in ((LAST_PERIOD - timedelta(days=1), "0.5"), (changed, "3")):
            plan_id = connection.execute(
                text(
                    "INSERT INTO billing_rate_plans (tenant_id, plan_code, name, effective_from) "
                    "VALUES ('acme', 'metered', 'Metered', :at) RETURNING rate_plan_id"
                ),
                {"at": effective_from},
            ).scalar_one()
            connection.execute(
                text(
                    "INSERT INTO billing_operation_rates (rate_plan_id, operation, rate) "
                    "VALUES (:plan, :operation, :rate)"
                ),
                {"plan": plan_id, "operation": API_CALL, "rate": Decimal(rate)},
            )
    # The current event first, so the worker's plan cache holds the new version.
    post(api, token, [event("now", 2)])
    drain()
    post(api, token, [event("before", 2, time=changed - timedelta(hours=1))])
    drain()
    dcu = {row["cloudevent_id"]: row["total_dcu"] for row in rows(engine)}
    assert dcu == {"now": Decimal("6"), "before": Decimal("1")}
