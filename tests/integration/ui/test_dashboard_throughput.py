"""The dashboard's throughput over the last hour: messages completed per minute as the broker
counted them, 60 minutes with the empty ones as zeros, given to the chart and its table."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

from fastapi.testclient import TestClient
from tests.integration.api.conftest import IssueKey
from tests.integration.api.pipeline import Source, insert_dead_letters, pipeline
from tests.integration.api.test_ledger_routes import bill

from hartonomous.security.roles import Role
from hartonomous.services import Platform
from hartonomous.services.broker import throughput_history

from .conftest import sign_in

__all__ = ["pipeline"]


def test_the_last_hours_throughput_is_the_brokers_count_per_minute(
    client: TestClient, issue_key: IssueKey, pipeline: Source, platform: Platform
) -> None:
    bill(pipeline, "acme", 3)  # messages completed by the sync worker
    insert_dead_letters(pipeline, 1)
    pipeline.conn.execute(  # two hours ago: outside the hour, not shown
        "INSERT INTO broker_throughput (queue_name, bucket, worker_pid, completed) "
        "SELECT queue_name, now() - interval '2 hours', 1, 1000 FROM broker_throughput LIMIT 1"
    )
    counted = pipeline.scalar(
        "SELECT sum(completed) FROM broker_throughput WHERE bucket > now() - interval '1 hour'"
    )
    assert counted > 0
    minutes = throughput_history(platform, 60)
    assert len(minutes) == 60
    assert [m.minute for m in minutes] == sorted(m.minute for m in minutes)
    now = datetime.now(UTC)
    assert (now - minutes[-1].minute).total_seconds() < 120  # ends at the current minute
    assert sum(m.completed for m in minutes) == counted
    sign_in(client, issue_key("ops", Role.ADMIN))
    page = client.get("/ui/dashboard").text
    series = json.loads(
        re.search(r"id=\"throughput-data\" hidden data-series='([^']+)'", page).group(1)  # type: ignore[union-attr]
    )
    assert sum(series["completed"]) == counted
    assert len(series["t"]) == 60
    assert 'id="throughput-chart"' in page
    # A tenant's own dashboard has no platform figures, and so no chart.
    user = TestClient(client.app)
    sign_in(user, issue_key("acme", Role.USER))
    assert "throughput-chart" not in user.get("/ui/dashboard").text
