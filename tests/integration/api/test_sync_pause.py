"""`sync pause` / `sync resume`: every sync loop holds off, health and status say so."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from tests.conftest import Cli
from tests.integration.heartbeats import beat_every_service, serving
from tests.integration.sync.conftest import wait_until

from hartonomous.cdc import CesConsumer
from hartonomous.config import Settings
from hartonomous.sync.worker import SyncWorker

from .pipeline import Source, pipeline

__all__ = ["pipeline"]


def _queued(source: Source) -> int:
    return int(source.scalar("SELECT count(*) FROM broker_messages"))


def test_a_paused_sync_worker_leaves_the_queue_and_resumes_on_resume(
    cli: Cli, api: TestClient, database_url: str, pipeline: Source
) -> None:
    pipeline.tenant("acme")
    pipeline.ingest("acme", 3)
    pipeline.capture()
    queued = _queued(pipeline)
    assert queued > 0
    paused = cli("--json", "sync", "pause", "--reason", "restoring Neo4j")
    assert paused.exit_code == 0, paused.stderr
    state = json.loads(paused.stdout)
    assert state["paused"] is True
    assert state["reason"] == "restoring Neo4j"
    assert "@" in state["paused_by"]

    beat_every_service(database_url)  # the others beat; the worker's own beat says paused
    with serving(SyncWorker(database_url, Settings()).run):
        wait_until(
            lambda: pipeline.scalar(
                "SELECT count(*) FROM service_heartbeats "
                "WHERE service_name = 'sync-worker' AND state = 'paused'"
            ),
            "the paused worker beats 'paused'",
        )
        assert _queued(pipeline) == queued  # nothing handled while paused
        body = api.get("/health/ready").json()
        assert body["status"] == "degraded", body
        assert body["sync"]["paused"] is True
        assert body["sync"]["backlog"] == queued
        assert "sync paused" in body["detail"]
        assert "restoring Neo4j" in body["detail"]
        assert f"{queued} queued event(s) wait" in body["detail"]
        assert "service sync-worker" not in body["detail"]  # paused is not silent or failing
        # A one-off run does not bypass the pause either.
        once = cli("sync", "--once")
        assert once.exit_code != 0
        assert "sync paused" in once.stderr
        assert "sync resume" in once.stderr
        assert _queued(pipeline) == queued

        resumed = cli("sync", "resume")
        assert resumed.exit_code == 0, resumed.stderr
        assert resumed.stdout.strip() == "sync resumed"
        wait_until(lambda: _queued(pipeline) == 0, "the resumed worker drains the queue")
    assert cli("sync", "resume").stdout.strip() == "sync was not paused"


def test_changes_waiting_uncaptured_in_the_slot_while_paused_are_seen(
    cli: Cli, api: TestClient, database_url: str, pipeline: Source
) -> None:
    """Issue 16's fourth trial: paused, 10 holdings waited in the slot while `status` said
    "0 queued event(s) wait" and /health/ready said ready."""
    pipeline.capture()
    assert cli("sync", "pause", "--reason", "drill").exit_code == 0
    beat_every_service(database_url)
    quiet = api.get("/health/ready").json()
    assert quiet["status"] == "ready", quiet  # paused with nothing waiting: a quiet system
    assert quiet["sync"]["uncaptured_bytes"] == 0

    pipeline.tenant("acme")  # a captured table's change, never captured: the CES is paused
    assert _queued(pipeline) == 0
    body = api.get("/health/ready").json()
    assert body["status"] == "degraded", body
    waiting = body["sync"]["uncaptured_bytes"]
    assert waiting > 0
    assert (
        f"0 queued event(s) and uncaptured changes ({waiting} bytes of WAL in the "
        "replication slot) wait until sync is resumed"
    ) in body["detail"]
    status = json.loads(cli("--json", "status").stdout)
    (pause,) = [c for c in status["checks"] if c["name"] == "sync pause"]
    assert "0 queued event(s) and uncaptured changes (" in pause["detail"], pause


def test_a_paused_ces_consumer_captures_nothing_until_resumed(
    cli: Cli, database_url: str, pipeline: Source
) -> None:
    assert cli("sync", "pause").exit_code == 0
    again = cli("--json", "sync", "pause", "--reason", "second")
    assert json.loads(again.stdout)["changed"] is False
    assert json.loads(again.stdout)["reason"] is None  # the first pause's details stay
    pipeline.tenant("acme")
    pipeline.ingest("acme", 2)
    once = cli("ces-consumer", "--once")
    assert once.exit_code != 0
    assert "sync paused" in once.stderr
    with serving(CesConsumer(database_url, Settings()).run):
        wait_until(
            lambda: pipeline.scalar(
                "SELECT count(*) FROM service_heartbeats "
                "WHERE service_name = 'ces-consumer' AND state = 'paused'"
            ),
            "the paused consumer beats 'paused'",
        )
        assert _queued(pipeline) == 0  # the changes wait in the WAL
        assert cli("sync", "resume").exit_code == 0
        wait_until(lambda: _queued(pipeline) > 0, "the resumed consumer captures the changes")
