"""`hartonomous status`: one screen of OK / WARN / FAIL checks, exit 1 on any FAIL."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import Cli
from tests.integration.heartbeats import beat_every_service

from hartonomous.db import head_revision

from .pipeline import Source, insert_dead_letters, pipeline

__all__ = ["pipeline"]


def _checks(cli: Cli) -> tuple[int, dict[str, Any], dict[str, dict[str, str]]]:
    result = cli("--json", "status")
    data = json.loads(result.stdout)
    return result.exit_code, data, {check["name"]: check for check in data["checks"]}


def test_silent_services_fail_and_beating_ones_are_ok(
    cli: Cli, database_url: str, pipeline: Source
) -> None:
    code, data, checks = _checks(cli)
    assert code == 1
    assert data["verdict"] == "FAIL"
    assert checks["service sync-worker"]["verdict"] == "FAIL"
    assert "no heartbeat" in checks["service sync-worker"]["detail"]
    assert checks["database"]["verdict"] == "OK"

    beat_every_service(database_url)
    code, data, checks = _checks(cli)
    assert code == 0, data
    for name in ("service ces-consumer", "service sync-worker", "service inference-worker"):
        assert checks[name]["verdict"] == "OK", checks[name]
    assert checks["change capture"]["verdict"] == "OK"
    assert checks["dead letters"]["verdict"] == "OK"
    assert checks["sync pause"] == {"name": "sync pause", "verdict": "OK", "detail": "not paused"}
    # No backup taken: never silently OK (a backup's line: tests/integration/backup).
    assert checks["last backup"] == {
        "name": "last backup",
        "verdict": "WARN",
        "detail": "no backups",
    }
    assert "% used" in checks["disk"]["detail"]
    assert "database" in checks["disk"]["detail"]
    assert data["verdict"] == "WARN"


def test_dead_letters_backlog_and_pause_are_named(
    cli: Cli, database_url: str, pipeline: Source
) -> None:
    beat_every_service(database_url)
    insert_dead_letters(pipeline, 2)
    pipeline.tenant("acme")
    pipeline.ingest("acme", 2)
    pipeline.capture()
    pipeline.conn.execute("UPDATE broker_messages SET enqueued_at = now() - interval '1 hour'")
    assert cli("sync", "pause", "--reason", "maintenance").exit_code == 0
    code, _data, checks = _checks(cli)
    assert code == 0  # WARNs only
    assert checks["dead letters"]["verdict"] == "WARN"
    assert checks["dead letters"]["detail"].startswith("2 awaiting replay")
    assert checks["backlog"]["verdict"] == "WARN"
    assert "oldest past 300.0s" in checks["backlog"]["detail"]
    assert checks["sync pause"]["verdict"] == "WARN"
    assert "maintenance" in checks["sync pause"]["detail"]
    human = cli("status")
    assert human.exit_code == 0
    assert "WARN sync pause" in human.stdout
    assert human.stdout.rstrip().endswith("overall WARN")


def test_a_database_that_is_not_usable_is_one_fail(cli: Cli, pipeline: Source) -> None:
    pipeline.conn.execute("UPDATE alembic_version SET version_num = '0001'")
    try:
        result = cli("status")
        assert result.exit_code == 1
        assert result.stdout.startswith("FAIL database")
        assert "migrations at 0001" in result.stdout
        assert "status FAIL: database" in result.stderr
    finally:
        pipeline.conn.execute("UPDATE alembic_version SET version_num = %s", (head_revision(),))
