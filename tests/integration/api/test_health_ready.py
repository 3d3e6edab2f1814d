"""`/health/ready` reports each service's heartbeat: ready only while every expected one beats."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from tests.integration.heartbeats import beat_every_service, serving
from tests.integration.sync.conftest import libpq, wait_until

from hartonomous.api import create_app
from hartonomous.config import Settings
from hartonomous.messaging.heartbeat import Heartbeat
from hartonomous.services import Platform
from hartonomous.sync.worker import SyncWorker

from .pipeline import Source, pipeline

__all__ = ["pipeline"]


def make_stale(url: str, service: str) -> None:
    with psycopg.connect(libpq(url), autocommit=True) as connection:
        connection.execute(
            "UPDATE service_heartbeats SET last_beat_at = now() - interval '10 minutes' "
            "WHERE service_name = %s",
            (service,),
        )


@pytest.fixture
def ready_state(api: TestClient, database_url: str, pipeline: Source) -> dict[str, Any]:
    """Change capture armed (the pipeline's slot) and every service beating: ready."""
    beat_every_service(database_url)
    answer = api.get("/health/ready")
    assert answer.status_code == 200
    return dict(answer.json())


def test_fresh_heartbeats_are_ready_and_listed(ready_state: dict[str, Any]) -> None:
    assert ready_state["status"] == "ready", ready_state
    assert ready_state["detail"] is None
    services = {s["service"]: s for s in ready_state["services"]}
    assert set(services) == {"ces-consumer", "sync-worker", "inference-worker"}
    for service in services.values():
        assert service["state"] == "running"
        assert service["fresh"] is True
        assert service["working"] is True


def test_a_stale_heartbeat_is_degraded_naming_the_service(
    ready_state: dict[str, Any], api: TestClient, database_url: str
) -> None:
    make_stale(database_url, "sync-worker")
    answer = api.get("/health/ready")
    assert answer.status_code == 200  # the API itself still serves
    body = answer.json()
    assert body["status"] == "degraded"
    assert "service sync-worker: last heartbeat" in body["detail"]
    assert "stale past 30.0s" in body["detail"]
    assert "ces-consumer" not in body["detail"]
    stale = next(s for s in body["services"] if s["service"] == "sync-worker")
    assert stale["fresh"] is False
    assert stale["age_seconds"] >= 600
    # A new beat (the loop turning again) makes it ready.
    beat_every_service(database_url)
    assert api.get("/health/ready").json()["status"] == "ready"


def test_a_missing_or_failing_service_is_degraded(
    api: TestClient, database_url: str, pipeline: Source
) -> None:
    answer = api.get("/health/ready").json()
    assert answer["status"] == "degraded"
    assert "service ces-consumer: no heartbeat" in answer["detail"]
    assert "service sync-worker: no heartbeat" in answer["detail"]
    beat_every_service(database_url)
    failing = Heartbeat(database_url, Settings(), "ces-consumer")
    failing.beat("failing", "OperationalError: the server closed the connection")
    failing.end_session()
    body = api.get("/health/ready").json()
    assert body["status"] == "degraded"
    assert "service ces-consumer: failing" in body["detail"]
    assert "the server closed the connection" in body["detail"]


def test_a_service_not_expected_is_not_required(
    platform: Platform, database_url: str, pipeline: Source
) -> None:
    settings = Settings.model_validate({"health": {"expected_services": ["ces-consumer"]}})
    beat = Heartbeat(database_url, settings, "ces-consumer")
    beat.beat("running")
    beat.end_session()
    client = TestClient(create_app(Platform(platform.engine, settings, platform.migrations_head)))
    assert client.get("/health/ready").json()["status"] == "ready"


def test_a_running_sync_worker_beats_and_its_stop_is_seen(
    api: TestClient, database_url: str, pipeline: Source
) -> None:
    beat_every_service(database_url)
    make_stale(database_url, "sync-worker")
    assert api.get("/health/ready").json()["status"] == "degraded"
    with serving(SyncWorker(database_url, Settings()).run):
        wait_until(
            lambda: api.get("/health/ready").json()["status"] == "ready",
            "the running worker's heartbeat makes readiness ready",
        )
    body = api.get("/health/ready").json()
    assert body["status"] == "degraded"
    assert "service sync-worker: stopped" in body["detail"]


def test_the_heartbeat_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="heartbeat_stale_seconds"):
        Settings.model_validate(
            {"health": {"heartbeat_interval_seconds": 10, "heartbeat_stale_seconds": 15}}
        )
    with pytest.raises(ValueError, match="expected_services"):
        Settings.model_validate({"health": {"expected_services": ["cron"]}})


def test_heartbeats_survive_the_row_of_another_instance(database_url: str) -> None:
    """Two instances of a service (two hosts or pids) keep a row each."""
    first = Heartbeat(database_url, Settings(), "sync-worker")
    second = Heartbeat(database_url, Settings(), "sync-worker")
    second.instance = "other-host:1"
    second.host = "other-host"
    first.beat("running")
    second.beat("standby")
    first.end_session()
    second.end_session()
    with psycopg.connect(libpq(database_url)) as connection:
        rows = connection.execute(
            "SELECT instance, state FROM service_heartbeats ORDER BY instance"
        ).fetchall()
    assert set(rows) == {(first.instance, "running"), ("other-host:1", "standby")}
