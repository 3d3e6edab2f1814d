"""The operator's tools tell the truth about change capture: lag, orphans, TRUNCATE, slot use."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from tests.conftest import Cli

from hartonomous.api.app import create_app
from hartonomous.cdc import CesConsumer
from hartonomous.config import Settings
from hartonomous.config.sections import CdcSettings, HealthSettings
from hartonomous.db import head_revision
from hartonomous.db.connection import libpq_url
from hartonomous.messaging.broker import Broker
from hartonomous.ops.smoke import Verdict, run_smoke
from hartonomous.services import Platform


def test_slot_lag_is_reported_and_degrades_readiness_past_the_threshold(
    engine: Engine, conn: psycopg.Connection[Any], consumer: CesConsumer, cli: Cli
) -> None:
    conn.execute("INSERT INTO tenants (tenant_id, display_name) VALUES ('a', 'A')")
    consumer.drain()
    # Readiness here is about change capture alone: no background service is expected.
    services = HealthSettings(expected_services=[])
    relaxed = TestClient(
        create_app(Platform(engine, Settings(cdc=CdcSettings(), health=services), head_revision()))
    )
    strict = TestClient(
        create_app(
            Platform(
                engine,
                Settings(cdc=CdcSettings(lag_alert_bytes=1), health=services),
                head_revision(),
            )
        )
    )
    assert relaxed.get("/health/ready").json()["status"] == "ready"
    # A change nobody consumes: the slot falls behind.
    conn.execute("INSERT INTO tenants (tenant_id, display_name) VALUES ('b', 'B')")
    status = consumer.status()
    assert status["lag_bytes"] > 0
    assert status["lag_seconds"] is not None  # the age: since the consumer was caught up
    assert status["lag_seconds"] >= 0

    answer = strict.get("/health/ready")
    assert answer.status_code == 200  # the API still serves; capture needs attention
    body = answer.json()
    assert body["status"] == "degraded"
    assert "change capture lags" in body["detail"]
    assert body["change_capture"]["lag_bytes"] > 0
    assert relaxed.get("/health/ready").json()["status"] == "ready"

    [capture] = [
        c for c in run_smoke(engine, CdcSettings(lag_alert_bytes=1)).checks if "capture" in c.name
    ]
    assert capture.verdict == Verdict.WARN
    assert "LAGGING" in capture.detail
    cli.env["HARTONOMOUS_CDC__LAG_ALERT_SECONDS"] = "0.000001"
    smoke = cli("smoke")
    assert smoke.exit_code == 0, smoke.stderr  # a warning, not a failure
    assert "WARN change data capture" in smoke.stdout

    broker = json.loads(cli("--json", "broker", "status").stdout)
    assert broker["change_capture"]["lag_bytes"] > 0
    assert broker["change_capture"]["lagging"] is True
    assert "change capture: slot lag" in cli("broker", "status").stdout
    graph = json.loads(cli("--json", "graph", "status").stdout)
    assert graph["change_capture"]["lag_bytes"] > 0

    consumer.drain()
    assert consumer.status()["lag_seconds"] is not None
    assert relaxed.get("/health/ready").json()["status"] == "ready"


def test_a_missing_slot_makes_readiness_degraded(
    engine: Engine, conn: psycopg.Connection[Any], consumer: CesConsumer
) -> None:
    consumer.close()
    conn.execute("SELECT pg_drop_replication_slot(%s)", (consumer.cdc.slot_name,))
    body = (
        TestClient(create_app(Platform(engine, Settings(), head_revision())))
        .get("/health/ready")
        .json()
    )
    assert body["status"] == "degraded"
    assert "slot hartonomous_ces is missing" in body["detail"]


def test_claims_of_a_dead_consumer_are_shown_as_orphaned(
    database_url: str, conn: psycopg.Connection[Any], cli: Cli
) -> None:
    broker = Broker(Settings().message_broker)
    broker.send_batch(conn, [])
    conn.execute(
        "INSERT INTO broker_messages (queue_name, message_type, body) "
        "SELECT %s, 't', '{}'::jsonb FROM generate_series(1, 3)",
        (broker.queue_name,),
    )
    with psycopg.connect(libpq_url(database_url), autocommit=True) as worker:
        claimed = broker.receive(worker, 2)
        pid = worker.info.backend_pid
    assert len(claimed) == 2
    # The worker's session is gone; its claims are orphans until the next receive.
    status = json.loads(cli("--json", "broker", "status").stdout)
    assert status["in_flight"] == 0
    assert status["orphaned_claims"] == 2
    assert status["orphaned_by"][0]["pid"] == pid
    assert status["orphaned_by"][0]["state"] == "consumer gone"
    text = cli("broker", "status").stdout
    assert f"pid {pid} (consumer gone): 2 message(s)" in text


def test_a_truncate_of_a_captured_table_is_logged_and_reported(
    conn: psycopg.Connection[Any],
    consumer: CesConsumer,
    cli: Cli,
    capsys: pytest.CaptureFixture[str],
) -> None:
    conn.execute("INSERT INTO tenants (tenant_id, display_name) VALUES ('t', 'T')")
    consumer.drain()
    conn.execute("TRUNCATE principals CASCADE")  # api_keys goes too; it is not captured
    conn.execute("INSERT INTO tenants (tenant_id, display_name) VALUES ('after', 'A')")
    assert consumer.drain() == 1  # a TRUNCATE produces no events
    logged = capsys.readouterr().out
    assert "cdc_truncate_not_captured" in logged
    assert "principals" in logged
    once = cli("--json", "ces-consumer", "--once")
    assert once.exit_code == 0, once.stderr
    report = json.loads(once.stdout)
    assert report["truncations_total"] == 1
    assert report["last_truncation"]["tables"] == ["principals"]
    assert "1 TRUNCATE(s) not captured (last: principals" in cli("broker", "status").stdout


def test_once_beside_a_running_consumer_answers_at_once_with_the_holder_and_lag(
    cli: Cli,
) -> None:
    process = cli.spawn("--json", "ces-consumer", stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        json.loads(process.stdout.readline())  # running: it holds the slot from now on
        answer = cli("--json", "ces-consumer", "--once")
        text = cli("ces-consumer", "--once")
    finally:
        process.terminate()
        process.wait(timeout=60)
    assert answer.exit_code == 0, answer.stderr
    report = json.loads(answer.stdout)
    assert report["events"] == 0
    assert report["slot_in_use_by"]["application_name"] == "hartonomous-ces-consumer"
    assert report["lag_bytes"] is not None
    assert "is in use by the running service (pid" in text.stdout
    assert "lag" in text.stdout
