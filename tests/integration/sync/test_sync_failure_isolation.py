"""One failing effect fails one message: the rest of its batch completes at once, the dead
letter carries the real exception, graph ids hold every key, and `graph repair` survives. A
failing decision too: the batch, decided without savepoints, is decided again carefully."""

from __future__ import annotations

import json

import pytest
from structlog.testing import capture_logs
from tests.conftest import Cli
from tests.integration.sync.conftest import Source, digest, drain

from hartonomous.config import Settings
from hartonomous.sync.events import HandlerOutcome, SyncEvent
from hartonomous.sync.handlers import AtomsHandler
from hartonomous.sync.lookups import Lookups
from hartonomous.sync.maintenance import repair

LONG_PRINCIPAL = "p" * 250  # the column allows 256


def test_a_principal_id_of_250_characters_is_a_graph_node_and_repairs(source: Source) -> None:
    source.tenant("acme", LONG_PRINCIPAL)
    source.ingest("acme", 40, principal_id=LONG_PRINCIPAL)
    queued = source.capture()
    outcome = drain(source, Settings())
    assert outcome.dead_lettered == 0
    assert outcome.completed == queued  # one drain: nothing waited for a lapsed claim
    assert outcome.billed == 40
    assert source.scalar("SELECT count(*) FROM broker_messages") == 0
    principal = f"principal:acme:{LONG_PRINCIPAL}"
    assert source.scalar("SELECT count(*) FROM graph_nodes WHERE node_id = %s", principal) == 1
    assert (
        source.scalar(
            "SELECT count(*) FROM graph_edges WHERE from_node_id = %s AND relationship = "
            "'REQUESTED'",
            principal,
        )
        == 1
    )
    source.conn.execute("DELETE FROM graph_edges")
    source.conn.execute("DELETE FROM graph_nodes")
    report = repair(source.conn)
    assert report.failed == {}
    assert source.scalar("SELECT count(*) FROM graph_nodes WHERE node_id = %s", principal) == 1


def test_a_graph_write_that_fails_dead_letters_only_its_message_with_the_exception(
    source: Source,
) -> None:
    source.tenant("poison")
    source.tenant("fine", "fred")
    source.ingest("fine", 40, principal_id="fred")
    queued = source.capture()
    # Any error the graph store raises for one row stands for the kind.
    source.conn.execute(
        "ALTER TABLE graph_nodes ADD CONSTRAINT no_poison "
        "CHECK (node_id <> 'tenant:poison') NOT VALID"
    )
    settings = Settings()
    first = drain(source, settings)
    assert first.completed == queued - 1  # the batch's other events did not wait
    assert first.delayed + first.dead_lettered >= 1  # retried with backoff, attempts counted
    for _ in range(settings.message_broker.resilience.poison_message_max_attempts):
        if not source.scalar("SELECT count(*) FROM broker_messages"):
            break
        source.conn.execute("UPDATE broker_messages SET available_at = now()")  # backoff over
        drain(source, settings)
    assert source.scalar("SELECT count(*) FROM broker_messages") == 0
    letters = source.conn.execute(
        "SELECT reason, exception_type, exception_message, exception_traceback, "
        "body->>'table' FROM message_dead_letters"
    ).fetchall()
    assert len(letters) == 1
    reason, kind, message, trace, table = letters[0]
    assert reason == "Exceeded maximum delivery attempts of 3"
    assert kind == "psycopg.errors.CheckViolation"
    assert "no_poison" in message
    assert "Traceback" in trace
    assert "CheckViolation" in trace
    assert table == "tenants"
    assert source.scalar("SELECT count(*) FROM billing_usage_ledger") == 40

    # `graph repair` reports the row it cannot write and repairs every other one.
    source.conn.execute("DELETE FROM graph_edges")
    source.conn.execute("DELETE FROM graph_nodes")
    report = repair(source.conn, batch_size=10)
    assert report.failed == {"tenants": 1}
    [error] = report.errors
    assert "tenants (poison): CheckViolation" in error
    assert "no_poison" in error
    assert source.scalar("SELECT count(*) FROM graph_nodes WHERE node_id = 'tenant:fine'") == 1
    assert (
        source.scalar("SELECT count(*) FROM graph_edges WHERE edge_id LIKE 'OWNS:holding:%%'") == 40
    )


def test_an_event_attribute_longer_than_the_ledger_keeps_is_refused_alone(source: Source) -> None:
    source.tenant("acme", "alice")
    source.ingest("acme", 5, principal_id="alice")
    source.capture()
    # An event whose principal the ledger cannot hold (as a foreign producer might send one):
    # its ledger row used to fail the whole batch's write and stop the worker.
    source.conn.execute(
        "UPDATE broker_messages SET body = jsonb_set(body, '{principalid}', "
        "to_jsonb(repeat('p', 300))) WHERE message_id = (SELECT min(message_id) "
        "FROM broker_messages WHERE body->>'table' = 'holdings')"
    )
    outcome = drain(source, Settings())
    assert outcome.dead_lettered == 1
    assert outcome.billed == 4
    assert source.scalar("SELECT count(*) FROM broker_messages") == 0
    reason, message = source.conn.execute(
        "SELECT reason, exception_message FROM message_dead_letters"
    ).fetchone() or ("", "")
    assert reason == "invalid_event"
    assert "event principal is 300 characters, over the 256" in message


# jsonb nested deeper than Python's JSON reader can follow (RecursionError): PostgreSQL takes it.
DEEP_ARRAY = "[" * 3000 + "]" * 3000
DEEP_OBJECT = '{"a":' * 3000 + "1" + "}" * 3000


def test_graph_repair_reports_rows_it_cannot_decode_and_repairs_the_rest(
    source: Source, cli: Cli
) -> None:
    source.tenant("acme", "alice")
    source.ingest("acme", 3, principal_id="alice")
    source.relate()
    source.capture()
    assert drain(source, Settings()).dead_lettered == 0
    deep_atom = source.scalar("SELECT atom_id FROM atoms ORDER BY atom_id LIMIT 1")
    source.conn.execute(
        "UPDATE atoms SET metadata = jsonb_build_object('deep', %s::jsonb) WHERE atom_id = %s",
        (DEEP_ARRAY, deep_atom),
    )
    source.conn.execute("UPDATE atom_relations SET metadata = %s::jsonb", (DEEP_OBJECT,))
    before = source.scalar("SELECT count(*) FROM graph_nodes")
    edges_before = source.scalar("SELECT count(*) FROM graph_edges")
    source.tenant("later")  # never synced: only the repair can add it

    repaired = cli("--json", "graph", "repair", "--batch-size", "2")

    assert repaired.exit_code == 0, repaired.stderr
    assert "Traceback" not in repaired.stderr
    report = json.loads(repaired.stdout)
    assert report["failed"] == {"atoms": 1, "atom_relations": 1}
    assert any(
        f"atoms ({deep_atom.hex()})" in e and "RecursionError" in e for e in report["errors"]
    )
    assert any(e.startswith("atom_relations (") for e in report["errors"])
    # The rows it could not decode keep what the graph holds for them (their sources exist).
    assert (report["removed_nodes"], report["removed_edges"]) == (0, 0)
    assert source.scalar("SELECT count(*) FROM graph_nodes") == before + 1
    assert source.scalar("SELECT count(*) FROM graph_edges") == edges_before
    assert source.scalar("SELECT count(*) FROM graph_nodes WHERE node_id = 'tenant:later'") == 1
    assert (
        source.scalar(
            "SELECT count(*) FROM graph_nodes WHERE node_id = %s", f"atom:{deep_atom.hex()}"
        )
        == 1
    )


def test_a_decision_that_fails_costs_only_its_message_and_its_permit_once(
    source: Source, monkeypatch: pytest.MonkeyPatch
) -> None:
    source.tenant("busy")
    job = source.ingest("busy", 5)
    queued = source.capture()
    poisoned = digest(f"busy/{job}/2").hex()
    apply = AtomsHandler.apply

    def failing(self: AtomsHandler, event: SyncEvent, lookups: Lookups) -> HandlerOutcome:
        # A handler's own bug, for one holding: stands for any error of a decision.
        if event.table == "holdings" and event.row.digest("atom_id") == poisoned:
            raise RuntimeError("this holding's handler fails")
        return apply(self, event, lookups)

    monkeypatch.setattr(AtomsHandler, "apply", failing)
    rule = {"name": "per-tenant", "scope": "tenant", "permit_limit": 100, "window_seconds": 3600}
    settings = Settings.model_validate({"security": {"rate_limits": [rule]}})
    # Only the tenant's own events count against its rule (atoms are shared: no tenant).
    counted = source.scalar(
        "SELECT count(*) FROM broker_messages "
        "WHERE coalesce(body->>'tenantid', body->'data'->>'tenant_id') = 'busy'"
    )
    with capture_logs() as logs:
        first = drain(source, settings)
    # The batch was decided without savepoints, then again one decision at a time.
    assert any(entry["event"] == "sync_batch_deciding_each" for entry in logs)
    assert first.completed == queued - 1  # the others completed in the same round
    assert first.delayed == 1  # the failing one retried with backoff, its attempt counted
    assert source.scalar("SELECT count(*) FROM billing_usage_ledger") == 4
    # The first pass's permits were refunded with its rollback; the failing decision's too.
    assert throttled(source) == counted - 1

    monkeypatch.setattr(AtomsHandler, "apply", apply)
    source.conn.execute("UPDATE broker_messages SET available_at = now()")  # backoff over
    second = drain(source, settings)
    assert second.completed == 1
    assert source.scalar("SELECT count(*) FROM billing_usage_ledger") == 5
    assert throttled(source) == counted
    assert source.scalar("SELECT count(*) FROM message_dead_letters") == 0


def throttled(source: Source) -> int:
    return int(
        source.scalar(
            "SELECT coalesce(sum(count), 0) FROM security_throttle_counters "
            "WHERE subject = 'tenant' AND subject_id = 'busy'"
        )
    )
