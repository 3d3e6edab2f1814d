"""`GET /metrics`: Prometheus text read from a real database, guarded by `[telemetry]`, and the
shipped Grafana dashboard names only metrics it exports."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool
from tests.integration.sync.conftest import drain

from hartonomous.api import create_app
from hartonomous.config import Settings
from hartonomous.ops.provision import enable_statement_statistics
from hartonomous.security.roles import Role
from hartonomous.services import Platform
from hartonomous.services.dead_letters import purge_dead_letters
from hartonomous.services.metrics import PlatformCollector, exposition

from .conftest import IssueKey, bearer
from .pipeline import Source, insert_dead_letters, pipeline

__all__ = ["pipeline"]

DASHBOARD = Path(__file__).parents[3] / "docs" / "grafana" / "hartonomous.json"
# What a family's samples add to its name, by its type (text format 0.0.4, as
# prometheus_client writes): a gauge's samples are its name alone, never `_total`.
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
}


def scrape(api: TestClient, headers: dict[str, str] | None = None) -> dict[str, list[Sample]]:
    answer = api.get("/metrics", headers=headers or {})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    families: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(answer.text):
        families[family.name] = list(family.samples)
    return families


def value(families: dict[str, list[Sample]], name: str, **labels: str) -> float:
    """The one sample named ``name`` (whichever family holds it) with these labels."""
    found = [
        s.value
        for samples in families.values()
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def open_client(platform: Platform, **telemetry: object) -> TestClient:
    settings = platform.settings.model_copy(deep=True)
    for key, setting in telemetry.items():
        setattr(settings.telemetry, key, setting)
    return TestClient(create_app(replace(platform, settings=settings)))


def test_metrics_need_an_admin_key_unless_open(
    api: TestClient, platform: Platform, issue_key: IssueKey
) -> None:
    assert api.get("/metrics").status_code == 401
    user = api.get("/metrics", headers=bearer(issue_key(role=Role.USER)))
    assert user.status_code == 403
    assert scrape(api, bearer(issue_key(role=Role.ADMIN)))["hartonomous_database_up"][0].value == 1
    with open_client(platform, metrics_access="open") as client:
        assert client.get("/metrics").status_code == 200


def test_metrics_show_the_queue_the_sync_work_and_the_searches(
    platform: Platform, pipeline: Source
) -> None:
    settings = Settings()
    with open_client(platform, metrics_access="open") as api:
        pipeline.tenant("acme")
        pipeline.ingest("acme", 3)
        pipeline.capture()
        insert_dead_letters(pipeline, 2)
        before = scrape(api)
        queued = int(pipeline.scalar("SELECT count(*) FROM broker_messages"))
        assert queued > 0
        assert value(before, "hartonomous_broker_queue_depth") == queued
        assert value(before, "hartonomous_dead_letters_pending") == 2
        assert value(before, "hartonomous_cdc_slot_exists") == 1
        assert value(before, "hartonomous_sync_paused") == 0
        assert value(before, "hartonomous_ingestion_files_total", status="ingested") == 3
        events = value(before, "hartonomous_cdc_events_total", consumer="ces_consumer")
        assert events >= queued

        drain(pipeline, settings)
        after = scrape(api)
        assert value(after, "hartonomous_broker_queue_depth") == 0
        billed = pipeline.scalar("SELECT count(*) FROM billing_usage_ledger")
        dcu = pipeline.scalar("SELECT sum(total_dcu)::float8 FROM billing_usage_ledger")
        assert billed > 0
        assert (
            sum(s.value for s in after["hartonomous_billing_events"] if s.name.endswith("_total"))
            == billed
        )
        assert sum(
            s.value for s in after["hartonomous_billing_dcu"] if s.name.endswith("_total")
        ) == pytest.approx(dcu)
        billed_counters = sum(
            s.value
            for s in after["hartonomous_sync_events"]
            if s.name.endswith("_total") and s.labels["outcome"] == "billed"
        )
        assert billed_counters == billed
        # PostgreSQL's own figures: the test server preloads pg_stat_statements like `up`'s.
        assert value(after, "hartonomous_pg_wal_bytes_total") > 0
        tables = {s.labels["table"] for s in after["hartonomous_pg_table_bytes"]}
        assert {"broker_messages", "billing_usage_ledger", "atoms"} <= tables
        assert value(after, "hartonomous_pg_lock_waits") >= 0


def test_dead_letters_kept_is_a_gauge_that_falls_on_purge(
    platform: Platform, pipeline: Source
) -> None:
    # A counter must never go down (rate() reads a fall as a reset); purge deletes rows.
    with open_client(platform, metrics_access="open") as api:
        insert_dead_letters(pipeline, 2)
        answer = api.get("/metrics").text
        assert "# TYPE hartonomous_dead_letters_kept gauge" in answer
        assert "hartonomous_dead_letters_kept_total" not in answer
        assert value(scrape(api), "hartonomous_dead_letters_kept") == 2
        purged = purge_dead_letters(platform, timedelta(0), confirm=True)
        assert purged.purged == 2
        assert value(scrape(api), "hartonomous_dead_letters_kept") == 0
        # What stays a counter is exposed as one.
        assert "# TYPE hartonomous_sync_events_total counter" in answer


def test_pg_stat_statements_sums_are_gauges_they_fall_on_a_reset(
    platform: Platform, pipeline: Source
) -> None:
    assert enable_statement_statistics(platform.maintenance_engine)  # as `db upgrade` does
    with open_client(platform, metrics_access="open") as api:
        pipeline.scalar("SELECT count(*) FROM tenants")
        answer = api.get("/metrics").text
        for name in (
            "hartonomous_pg_statement_calls",
            "hartonomous_pg_statement_seconds",
            "hartonomous_pg_top_statement_seconds",
            "hartonomous_pg_top_statement_calls",
        ):
            assert f"# TYPE {name} gauge" in answer, name
            assert f"{name}_total" not in answer, name
        before = value(scrape(api), "hartonomous_pg_statement_calls")
        assert before > 0
        pipeline.scalar("SELECT pg_stat_statements_reset() IS NOT NULL")
        assert value(scrape(api), "hartonomous_pg_statement_calls") < before


def test_an_open_transaction_shows_as_the_oldest_transaction_age(
    api: TestClient, issue_key: IssueKey, engine: Engine
) -> None:
    admin = bearer(issue_key(role=Role.ADMIN))
    with engine.connect() as holder:
        holder.execute(text("SELECT 1"))  # a transaction left open, as a forgotten session's
        started = holder.execute(text("SELECT extract(epoch FROM now())")).scalar_one()
        families = scrape(api, admin)
        seen = holder.execute(text("SELECT extract(epoch FROM clock_timestamp())")).scalar_one()
    age = value(families, "hartonomous_pg_oldest_transaction_seconds")
    # At least as old as the holder's transaction was when scraped, and no older than it now is.
    assert 0 < age <= float(seen - started)


def test_search_latency_is_a_histogram_of_this_process(
    api: TestClient, issue_key: IssueKey, pipeline: Source
) -> None:
    admin = bearer(issue_key(role=Role.ADMIN))
    before = scrape(api, admin)
    counted = [
        s.value
        for s in before.get("hartonomous_search_duration_seconds", [])
        if s.name.endswith("_count") and s.labels["mode"] == "lexical"
    ]
    key = issue_key(tenant="acme")
    for _ in range(3):
        answer = api.post(
            "/v1/search", json={"query": "anything", "mode": "lexical"}, headers=bearer(key)
        )
        assert answer.status_code == 200, answer.text
    after = scrape(api, admin)
    count = value(after, "hartonomous_search_duration_seconds_count", mode="lexical")
    assert count == (counted[0] if counted else 0) + 3


@pytest.fixture
def neo4j_api(platform: Platform, neo4j_uri: str, tmp_path: Path) -> Iterator[TestClient]:
    """Projection on, pg_stat_statements created as `db upgrade` does (the embedded server
    preloads it), and WAL archiving on with one segment in the backup directory."""
    assert enable_statement_statistics(platform.maintenance_engine)
    settings = platform.settings.model_copy(deep=True)
    settings.backup.archive_wal = True
    settings.backup.directory = str(tmp_path)
    (tmp_path / "wal").mkdir()
    (tmp_path / "wal" / "000000010000000000000001").write_bytes(b"")
    settings.neo4j.uri = neo4j_uri
    settings.telemetry.metrics_access = "open"
    app = create_app(replace(platform, settings=settings))
    with TestClient(app) as client:
        yield client
    app.state.metrics.close()


def test_every_dashboard_panel_names_an_exported_metric(
    neo4j_api: TestClient, pipeline: Source
) -> None:
    families = scrape(neo4j_api)
    assert value(families, "hartonomous_pg_stat_statements_available") == 1
    assert value(families, "hartonomous_pg_statement_calls") > 0
    assert value(families, "hartonomous_neo4j_up") == 1
    assert value(families, "hartonomous_neo4j_heap_used_bytes") > 0
    assert value(families, "hartonomous_neo4j_heap_max_bytes") >= value(
        families, "hartonomous_neo4j_heap_used_bytes"
    )
    kinds = {
        family.name: family.type
        for family in text_string_to_metric_families(neo4j_api.get("/metrics").text)
    }
    exported = {name + suffix for name, kind in kinds.items() for suffix in _SUFFIXES[kind]}
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 20
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = set(re.findall(r"\bhartonomous_[a-z0-9_]+", target["expr"]))
            assert names, (panel["title"], target["expr"])
            missing = names - exported
            assert not missing, f"panel {panel['title']!r} names {missing}, not exported"


def test_a_database_that_does_not_answer_is_a_zero_not_a_failed_scrape(
    platform: Platform, tmp_path: Path
) -> None:
    # A socket folder where no server listens: the connection is refused at once.
    gone = create_engine(f"postgresql+psycopg://nobody@/nothing?host={tmp_path}")
    body = exposition(PlatformCollector(replace(platform, maintenance_engine=gone))).decode()
    families = {f.name: list(f.samples) for f in text_string_to_metric_families(body)}
    assert value(families, "hartonomous_database_up") == 0
    assert "hartonomous_broker_queue_depth" not in families  # no made-up figures
    assert "hartonomous_search_duration_seconds" in families  # this process's own still shown
    gone.dispose()


def test_database_up_zero_reaches_an_admin_key_verified_before_the_database_went_away(
    platform: Platform, issue_key: IssueKey, tmp_path: Path
) -> None:
    # The platform's real database, behind a connection target the test can move to a socket
    # folder where no server listens (the outage: every new connection is refused).
    target = {
        "url": platform.maintenance_engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False
        )
    }
    engine = create_engine(
        "postgresql+psycopg://", creator=lambda: psycopg.connect(target["url"]), poolclass=NullPool
    )
    settings = platform.settings.model_copy(deep=True)
    settings.security.api_key_cache_seconds = 0  # every request looks its key up
    admin, user = issue_key(role=Role.ADMIN), issue_key(role=Role.USER)
    never_seen = issue_key(tenant="other", role=Role.ADMIN)
    app = create_app(replace(platform, maintenance_engine=engine, settings=settings))
    try:
        # A driver error raised through the app is answered 503, not re-raised to the test.
        with TestClient(app, raise_server_exceptions=False) as api:
            assert value(scrape(api, bearer(admin)), "hartonomous_database_up") == 1
            assert api.get("/metrics", headers=bearer(user)).status_code == 403

            target["url"] = f"host={tmp_path} dbname=nothing user=nobody"
            families = scrape(api, bearer(admin))
            assert value(families, "hartonomous_database_up") == 0
            assert "hartonomous_broker_queue_depth" not in families
            # No bypass: a key this process did not verify, a wrong secret, a USER key, none.
            unseen = api.get("/metrics", headers=bearer(never_seen))
            assert unseen.status_code == 503, unseen.text
            assert api.get("/metrics", headers=bearer(admin[:-2] + "xx")).status_code == 401
            assert api.get("/metrics", headers=bearer(user)).status_code == 403
            assert api.get("/metrics").status_code == 401
            # Data routes stay closed to the remembered key.
            assert api.get("/v1/holdings", headers=bearer(admin)).status_code == 503
    finally:
        engine.dispose()
