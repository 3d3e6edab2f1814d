"""One failing effect fails one message: the rest of its batch completes at once, the dead
letter carries the real exception, graph ids hold every key, and `graph repair` survives."""

from __future__ import annotations

import json

from tests.conftest import Cli
from tests.integration.sync.conftest import Source, drain

from hartonomous.config import Settings
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
