"""Every event a service sends itself goes where the sync workers read: on the Kafka transport,
usage events and `graph catch-up`'s re-emitted events are produced onto the topic (not into
the in-database queue, which nobody reads then), and what waits on the topic counts as in
flight for catch-up and as waiting for a period close. Real Kafka 4, real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import create_engine
from tests.integration.sync.conftest import Source, drain
from tests.integration.sync.test_sync_kafka import kafka_settings, topic_events

from hartonomous.billing.periods import PeriodEventsQueuedError, period_label
from hartonomous.cdc import CesConsumer
from hartonomous.config import Settings
from hartonomous.db import head_revision
from hartonomous.messaging.transport import open_transport
from hartonomous.services import Platform
from hartonomous.services.graph import graph_status
from hartonomous.services.ledger_close import close_ledger_period
from hartonomous.services.operations import operations_overview
from hartonomous.services.usage_events import submit_usage_events
from hartonomous.sync.catch_up import catch_up

API_CALL = "usage.api_call"


def with_rates(settings: Settings) -> Settings:
    billing = settings.billing.model_copy(update={"operation_rates": {API_CALL: Decimal("0.5")}})
    return settings.model_copy(update={"billing": billing})


@pytest.fixture
def platform(source: Source, kafka_bootstrap: str) -> Iterator[Platform]:
    engine = create_engine(source.url)
    platform = Platform(engine, with_rates(kafka_settings(kafka_bootstrap)), head_revision())
    try:
        yield platform
    finally:
        platform.close()
        engine.dispose()


def usage_event(event_id: str, moment: datetime) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": "//billing.example/gateway",
        "type": API_CALL,
        "time": moment.isoformat(),
        "data": {"units": 2},
    }


def ledger_rows(source: Source) -> int:
    return int(source.scalar("SELECT count(*) FROM billing_usage_ledger"))


def test_usage_events_on_kafka_are_produced_to_the_topic_and_billed_once(
    source: Source, platform: Platform
) -> None:
    source.tenant("acme", "alice")
    now = datetime.now(UTC)
    outcome = submit_usage_events(
        platform, "acme", "alice", [usage_event("e1", now), usage_event("e2", now)]
    )
    assert [r.status for r in outcome.results] == ["accepted", "accepted"]
    # On the topic, not in the in-database queue (which a Kafka worker never reads).
    assert source.scalar("SELECT count(*) FROM broker_messages") == 0
    assert sorted(e["id"] for e in topic_events(platform.settings)) == ["e1", "e2"]
    assert drain(source, platform.settings).billed == 2
    assert ledger_rows(source) == 2
    # The same batch again: duplicates, nothing produced or billed again.
    again = submit_usage_events(platform, "acme", "alice", [usage_event("e1", now)])
    assert [r.status for r in again.results] == ["duplicate"]
    assert drain(source, platform.settings).billed == 0
    assert ledger_rows(source) == 2


def test_a_period_close_waits_for_the_usage_events_of_the_period_still_on_kafka(
    source: Source, platform: Platform
) -> None:
    source.tenant("acme", "alice")
    now = datetime.now(UTC)
    last_month = now.replace(day=1) - timedelta(days=3)
    submit_usage_events(platform, "acme", "alice", [usage_event("late", last_month)])
    period = period_label(last_month.date())
    with pytest.raises(PeriodEventsQueuedError, match="1 event"):
        close_ledger_period(platform, period, now=now)
    assert source.scalar("SELECT count(*) FROM billing_closed_periods") == 0
    assert drain(source, platform.settings).billed == 1
    closed = close_ledger_period(platform, period, now=now)
    assert (closed.row_count, closed.closed_now) == (1, True)


def test_catch_up_on_kafka_re_emits_onto_the_topic_and_skips_rows_still_there(
    source: Source, platform: Platform
) -> None:
    settings = platform.settings
    ces = CesConsumer(source.url, settings)
    transport = open_transport(settings.message_broker)
    try:
        source.tenant("acme", "alice")
        source.ingest("acme", 3, principal_id="alice")
        captured = ces.drain()
        # What waits on the topic is what graph status and the dashboard show as backlog.
        status = graph_status(platform)
        assert status.kafka is not None
        assert status.kafka.lag == captured
        assert status.queue.pending_events == 0
        overview = operations_overview(platform, "acme", operator=True)
        assert overview.platform is not None
        assert overview.platform.depth == captured
        # Captured onto the topic, not handled yet: on their way, not gaps.
        report = catch_up(source.conn, transport)
        assert (report.ledger_gaps, report.events_emitted) == ({}, 0)
        assert drain(source, settings).billed == 3
        lost = source.scalar(
            "SELECT metadata->>'subject' FROM billing_usage_ledger ORDER BY 1 LIMIT 1"
        )
        source.conn.execute(
            "DELETE FROM billing_usage_ledger WHERE metadata->>'subject' = %s", (lost,)
        )
        first = catch_up(source.conn, transport)
        assert (first.ledger_gaps, first.events_emitted) == ({"holdings": 1}, 1)
        assert source.scalar("SELECT count(*) FROM broker_messages") == 0
        # Beside the captured event of that row, its re-emitted one, on the topic.
        assert len([e for e in topic_events(settings) if e.get("subject") == lost]) == 2
        # Run again before the worker: the re-emitted event waits on the topic.
        second = catch_up(source.conn, transport)
        assert (second.events_emitted, second.events_already_queued) == (0, 1)
        outcome = drain(source, settings)
        assert (outcome.billed, outcome.dead_lettered) == (1, 0)
        assert ledger_rows(source) == 3
        third = catch_up(source.conn, transport)
        assert (third.ledger_gaps, third.events_emitted) == ({}, 0)
    finally:
        transport.close()
        ces.close()
