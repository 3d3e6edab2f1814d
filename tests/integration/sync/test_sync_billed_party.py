"""A shared model's events are billed to the party captured with them (docs/scale-out.md,
"Keys"): the CES consumer writes the model file's first holder into the CloudEvent, so a
redelivery bills the same tenant even after the first holder changed, and the ledger's key
(tenant_id, event_id) keeps it to one row."""

from __future__ import annotations

import uuid

from tests.integration.sync.conftest import Source, digest, drain

from hartonomous.config import Settings
from hartonomous.messaging import Broker, OutgoingMessage


def _hold(source: Source, tenant: str, principal: str, atom: bytes) -> None:
    job = uuid.uuid4()
    source.conn.execute(
        "INSERT INTO ingestion_jobs (tenant_id, job_id, principal_id) VALUES (%s, %s, %s)",
        (tenant, job, principal),
    )
    source.conn.execute(
        "INSERT INTO holdings (tenant_id, atom_id, source_uri, source_type, job_id) "
        "VALUES (%s, %s, %s, 'file', %s)",
        (tenant, atom, f"file:///{tenant}/model.safetensors", job),
    )


def test_a_redelivered_model_event_bills_its_captured_holder_once(source: Source) -> None:
    source.tenant("acme", "alice")
    source.tenant("globex", "bob")
    model = digest("a shared model file")
    source.conn.execute(
        "INSERT INTO atoms (atom_id, kind, modality, subtype, size_bytes) "
        "VALUES (%s, 'composite', 'model', 'safetensors', 16)",
        (model,),
    )
    _hold(source, "acme", "alice", model)  # the first holder
    _hold(source, "globex", "bob", model)
    source.conn.execute(
        "INSERT INTO models (atom_id, format, parameter_count, tensor_count) "
        "VALUES (%s, 'safetensors', 4, 0)",
        (model,),
    )
    source.capture()
    body, conversation = source.conn.execute(
        "SELECT body::text, conversation_id FROM broker_messages WHERE body->>'table' = 'models'"
    ).fetchone() or (None, None)
    assert body is not None
    assert '"billedtenantid": "acme"' in body
    assert '"billedprincipalid": "alice"' in body
    assert drain(source, Settings()).dead_lettered == 0

    # The first holder changes (acme lets go of the file), then the same event comes again.
    source.conn.execute("DELETE FROM holdings WHERE tenant_id = 'acme'")
    again = OutgoingMessage(None, conversation, body_text=body)
    Broker(Settings().message_broker).send_batch(source.conn, [again])
    outcome = drain(source, Settings())
    assert outcome.completed == 1
    assert outcome.billed == 0

    rows = source.conn.execute(
        "SELECT tenant_id, principal_id, operation FROM billing_usage_ledger "
        "WHERE operation = 'neo4j_sync.model_updated'"
    ).fetchall()
    assert rows == [("acme", "alice", "neo4j_sync.model_updated")]
    assert source.scalar("SELECT count(*) FROM broker_messages") == 0
