"""The CES consumer on real PostgreSQL: events, exactly once across SIGKILLs, re-creation."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from tests.conftest import Cli, CliProcess

from hartonomous.cdc import CesConsumer
from hartonomous.config import Settings
from hartonomous.db.connection import libpq_url
from hartonomous.messaging import parse_cloudevent


def libpq(url: str) -> str:
    return libpq_url(url)


def count_rows(conn: psycopg.Connection[Any], sql: str) -> int:
    row = conn.execute(sql).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return int(row[0])


def bodies(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    return [row[0] for row in conn.execute("SELECT body FROM broker_messages ORDER BY message_id")]


def test_changes_become_cloudevents_with_their_fields(
    consumer: CesConsumer, conn: psycopg.Connection[Any]
) -> None:
    with conn.transaction():
        conn.execute("INSERT INTO tenants (tenant_id, display_name) VALUES ('acme', 'Acme')")
        conn.execute(
            "INSERT INTO principals (tenant_id, principal_id, display_name) "
            "VALUES ('acme', 'alice', 'Alice')"
        )
    conn.execute("UPDATE tenants SET display_name = 'Acme Inc' WHERE tenant_id = 'acme'")
    conn.execute("DELETE FROM principals WHERE principal_id = 'alice'")
    assert consumer.drain() == 4
    events = bodies(conn)
    assert [(e["table"], e["operation"]) for e in events] == [
        ("tenants", "insert"),
        ("principals", "insert"),
        ("tenants", "update"),
        ("principals", "delete"),
    ]
    insert = parse_cloudevent(events[0])
    assert insert.get_type() == "io.hartonomous.cdc.tenants.insert"
    assert insert.get_extension("tenantid") == "acme"
    data = insert.get_data()
    assert isinstance(data, dict)
    assert data["display_name"] == "Acme"
    assert data["is_active"] is True
    assert "T" in data["created_at"]
    assert events[1]["principalid"] == "alice"
    assert events[2]["data"]["display_name"] == "Acme Inc"
    assert events[3]["data"] == {"tenant_id": "acme", "principal_id": "alice"}
    assert events[0]["lsn"] == events[1]["lsn"]  # one transaction, one commit position
    assert len({e["id"] for e in events}) == 4
    conversations = conn.execute(
        "SELECT conversation_id FROM broker_messages ORDER BY message_id"
    ).fetchall()
    assert conversations[0] == conversations[2] == ('tenants:["acme"]',)
    assert consumer.drain() == 0
    status = consumer.status()
    assert status["slot_exists"]
    assert {"principals", "tenants"} <= set(status["published_tables"])
    assert status["published_tables"] == status["captured_tables"]
    assert status["events_total"] == 4


class _CrashAfterCommit(CesConsumer):
    """Dies between the enqueue commit and the slot advance (the window the checkpoint covers)."""

    def _advance(self, connection: psycopg.Connection[Any], safe: int) -> None:
        raise KeyboardInterrupt("simulated crash")


def test_a_crash_between_commit_and_slot_advance_neither_loses_nor_duplicates(
    consumer: CesConsumer, conn: psycopg.Connection[Any]
) -> None:
    conn.execute("INSERT INTO tenants (tenant_id, display_name) VALUES ('t1', 'T1')")
    crashing = _CrashAfterCommit(consumer.url, Settings())
    with pytest.raises(KeyboardInterrupt):
        crashing.drain()
    crashing.close()
    first = bodies(conn)
    assert len(first) == 1
    conn.execute("INSERT INTO tenants (tenant_id, display_name) VALUES ('t2', 'T2')")
    assert consumer.drain() == 1  # t1 is re-read from the slot and skipped
    events = bodies(conn)
    assert [e["data"]["tenant_id"] for e in events] == ["t1", "t2"]


def test_missing_slot_and_publication_are_recreated(
    consumer: CesConsumer, conn: psycopg.Connection[Any]
) -> None:
    consumer.close()
    conn.execute(f"DROP PUBLICATION {consumer.cdc.publication_name}")
    conn.execute("SELECT pg_drop_replication_slot(%s)", (consumer.cdc.slot_name,))
    conn.execute("INSERT INTO tenants (tenant_id, display_name) VALUES ('lost', 'x')")
    assert consumer.drain() == 0  # a change while no slot existed is not captured
    conn.execute("INSERT INTO tenants (tenant_id, display_name) VALUES ('seen', 'x')")
    assert consumer.drain() == 1
    status = consumer.status()
    assert status["slot_exists"]
    assert status["publication_exists"]


def _start(cli: Cli) -> CliProcess:
    return cli.spawn("ces-consumer")


def test_sigkill_repeatedly_while_rows_change_gives_exactly_one_event_per_change(
    cli: Cli, conn: psycopg.Connection[Any]
) -> None:
    cli.env["HARTONOMOUS_CDC__BATCH_SIZE"] = "200"
    assert cli("ces-consumer", "--once").exit_code == 0  # slot + publication exist first
    rng = random.Random(7)  # noqa: S311 - test data, not secrets
    rows, kills = 3000, 6
    process = _start(cli)
    inserted = updated = 0
    try:
        while inserted < rows:
            with conn.transaction():
                batch = rng.randint(1, 40)
                conn.execute(
                    "INSERT INTO tenants (tenant_id, display_name) "
                    "SELECT 'k' || g, 'n' FROM generate_series(%s::int, %s::int) AS g",
                    (inserted, min(inserted + batch, rows) - 1),
                )
                inserted = min(inserted + batch, rows)
            conn.execute(
                "UPDATE tenants SET display_name = 'u' WHERE tenant_id = %s", (f"k{inserted - 1}",)
            )
            updated += 1
            if inserted * kills // rows != (inserted - batch) * kills // rows:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
                process = _start(cli)
            time.sleep(0.002)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    result = cli("--json", "ces-consumer", "--once")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["slot_exists"]
    counts = conn.execute(
        "SELECT body->>'operation', count(*), count(DISTINCT body->>'id'), "
        "count(DISTINCT body->'data'->>'tenant_id') FROM broker_messages "
        "WHERE body->>'table' = 'tenants' GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert counts[0] == ("insert", rows, rows, rows)
    assert counts[1][:3] == ("update", updated, updated)


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    """Poll until `condition` holds; the deadline only keeps a broken consumer from hanging."""
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def test_the_long_running_consumer_captures_changes_as_they_commit_and_stops_on_sigterm(
    cli: Cli, conn: psycopg.Connection[Any]
) -> None:
    conn.execute(
        "INSERT INTO broker_throughput (queue_name, bucket, worker_pid, completed) "
        "VALUES ('q', now() - interval '3 days', 1, 5)"  # older than the default retention
    )
    process = cli.spawn("--json", "ces-consumer", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert process.stdout is not None
        started = json.loads(process.stdout.readline())  # printed once slot and checkpoint exist
        assert started["slot_exists"]
        assert "tenants" in started["published_tables"]

        def events() -> int:
            return count_rows(conn, "SELECT count(*) FROM broker_messages")

        for round_number in range(3):
            with conn.transaction():
                conn.execute(
                    "INSERT INTO tenants (tenant_id, display_name) "
                    "SELECT 'r' || %s || '-' || g, 'x' FROM generate_series(1, 10) AS g",
                    (round_number,),
                )
            _wait_for(lambda n=round_number: events() == 10 * (n + 1), "the inserts' events")
        conn.execute("UPDATE tenants SET display_name = 'y' WHERE tenant_id = 'r0-1'")
        conn.execute("DELETE FROM tenants WHERE tenant_id = 'r2-10'")
        _wait_for(lambda: events() == 32, "the update and delete events")

        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "Traceback" not in err
    operations = conn.execute(
        "SELECT body->>'operation', count(*), count(DISTINCT body->>'id') FROM broker_messages "
        "GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert operations == [("delete", 1, 1), ("insert", 30, 30), ("update", 1, 1)]
    assert count_rows(conn, "SELECT count(*) FROM broker_throughput") == 0
    # Stopped cleanly: the advisory lock is free, the slot confirmed everything it enqueued.
    after = cli("--json", "ces-consumer", "--once")
    assert after.exit_code == 0, after.stderr
    assert json.loads(after.stdout)["events"] == 0
    assert json.loads(after.stdout)["events_total"] == 32


def test_retention_minutes_prunes_old_throughput_counters(
    cli: Cli, conn: psycopg.Connection[Any]
) -> None:
    conn.execute(
        "INSERT INTO broker_throughput (queue_name, bucket, worker_pid, completed) VALUES "
        "('q', now() - interval '2 hours', 1, 5), ('q', now() - interval '30 minutes', 1, 7)"
    )
    cli.env["HARTONOMOUS_CDC__RETENTION_MINUTES"] = "60"
    result = cli("ces-consumer", "--once")
    assert result.exit_code == 0, result.stderr
    rows = conn.execute("SELECT completed FROM broker_throughput").fetchall()
    assert rows == [(7,)]
