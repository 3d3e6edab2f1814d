"""Changes the CES consumer cannot turn into a message are set aside; capture never wedges."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from safetensors.numpy import save_file
from sqlalchemy import Engine
from tests.conftest import Cli
from tests.integration.data_plane.data_plane_support import add_tenant, by_name, ingest

from hartonomous.cdc import CesConsumer
from hartonomous.cdc.consumer import TOO_LARGE_REASON
from hartonomous.config import Settings

LIMIT = Settings().message_broker.max_message_characters


def queued(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    return [row[0] for row in conn.execute("SELECT body FROM broker_messages ORDER BY message_id")]


def dead_letters(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT reason, exception_type, exception_message, attempts, body->>'table', "
        "length(body::text), metadata FROM message_dead_letters ORDER BY dead_letter_id"
    ).fetchall()


def test_a_lora_with_600_kb_of_metadata_is_set_aside_and_capture_moves_on(
    engine: Engine,
    conn: psycopg.Connection[Any],
    consumer: CesConsumer,
    cli: Cli,
    tmp_path: Path,
) -> None:
    add_tenant(engine, "acme")
    consumer.drain()
    conn.execute("DELETE FROM broker_messages")
    before = consumer.status()["events_total"]
    # A valid LoRA whose __metadata__ (training tags, as kohya writes them) is ~600 KB.
    metadata = {f"ss_tag_frequency_{n:03}": "tag," * 250 for n in range(600)}
    path = tmp_path / "lora.safetensors"
    save_file({"lora_up.weight": np.ones((4, 4), dtype=np.float32)}, str(path), metadata=metadata)
    outcome = by_name(ingest(engine, "acme", path))["lora.safetensors"]
    assert outcome.status == "ingested", outcome.error
    conn.execute("INSERT INTO tenants (tenant_id, display_name) VALUES ('later', 'Later')")

    consumer.drain()  # before: MessageTooLargeError on every step, nothing after it enqueued

    events = queued(conn)
    assert events[-1]["table"] == "tenants"
    assert events[-1]["data"]["tenant_id"] == "later"  # the change after the poison flowed
    letters = dead_letters(conn)
    assert letters, "the oversized event must be set aside, not dropped"
    for reason, exception_type, message, attempts, table, size, details in letters:
        assert reason == TOO_LARGE_REASON
        assert exception_type == "hartonomous.messaging.broker.MessageTooLargeError"
        assert f"over the limit of {LIMIT}" in message
        assert attempts == 0
        assert table in {"atoms", "models"}
        assert size > LIMIT  # the whole event is kept, exact, for a replay
        assert details["source"] == "ces-consumer"
    # Nothing lost: every captured change is either a queued event or a dead letter.
    status = consumer.status()
    assert status["events_total"] - before == len(events)
    assert status["dead_lettered_total"] == len(letters)
    assert consumer.drain() == 0  # and nothing is set aside twice
    assert len(dead_letters(conn)) == len(letters)

    broker = json.loads(cli("--json", "broker", "status").stdout)
    assert broker["dead_letters"] == len(letters)
    assert broker["change_capture"]["dead_lettered_total"] == len(letters)
    listed = cli("deadletters", "list").stdout
    assert TOO_LARGE_REASON in listed
    first_id = conn.execute("SELECT min(dead_letter_id) FROM message_dead_letters").fetchone()
    assert first_id is not None
    shown = cli("deadletters", "show", str(first_id[0]))
    assert shown.exit_code == 0, shown.stderr
    assert "hartonomous.messaging.broker.MessageTooLargeError" in shown.stdout
    assert '"source": "ces-consumer"' in shown.stdout
    replayed = cli("--json", "deadletters", "replay", "--reason", TOO_LARGE_REASON)
    assert replayed.exit_code == 0, replayed.stderr
    assert json.loads(replayed.stdout)["replayed"] == len(letters)
    tables = {e["table"] for e in queued(conn)[len(events) :]}
    assert tables <= {"atoms", "models"}
    assert len(queued(conn)) == len(events) + len(letters)
    purged = cli("deadletters", "purge", "--older-than", "0s", "--yes")
    assert purged.exit_code == 0, purged.stderr
    assert dead_letters(conn) == []


def test_an_oversized_text_update_is_set_aside_while_its_transaction_mates_flow(
    conn: psycopg.Connection[Any], consumer: CesConsumer
) -> None:
    atom = hashlib.sha256(b"big").digest()
    conn.execute(
        "INSERT INTO atoms (atom_id, kind, modality, subtype, size_bytes, canonical_text) "
        "VALUES (%s, 'leaf', 'text', 'plain', 3, 'big')",
        (atom,),
    )
    consumer.drain()
    conn.execute("DELETE FROM broker_messages")
    with conn.transaction():
        conn.execute("INSERT INTO tenants (tenant_id, display_name) VALUES ('before', 'B')")
        # A 700,000-character document text: an event of ~700 KB.
        conn.execute(
            "UPDATE atoms SET canonical_text = repeat('word ', 140000) WHERE atom_id = %s",
            (atom,),
        )
        conn.execute("INSERT INTO tenants (tenant_id, display_name) VALUES ('after', 'A')")
    conn.execute("INSERT INTO tenants (tenant_id, display_name) VALUES ('next', 'N')")

    consumer.drain()

    assert [e["data"]["tenant_id"] for e in queued(conn)] == ["before", "after", "next"]
    [(reason, _, _, _, table, size, details)] = dead_letters(conn)
    assert reason == TOO_LARGE_REASON
    assert table == "atoms"
    assert size > 700_000
    assert details["change_index"] == "1"  # its place in the transaction, for the record


def test_a_principal_key_of_250_non_ascii_characters_is_delivered(
    conn: psycopg.Connection[Any], consumer: CesConsumer
) -> None:
    # Escaped as JSON the key is 1,500 characters: over the 512 of broker conversation ids.
    principal = "ж" * 250
    conn.execute("INSERT INTO tenants (tenant_id, display_name) VALUES ('acme', 'Acme')")
    conn.execute(
        "INSERT INTO principals (tenant_id, principal_id, display_name) VALUES ('acme', %s, 'Z')",
        (principal,),
    )
    conn.execute("UPDATE principals SET display_name = 'Zh' WHERE principal_id = %s", (principal,))
    conn.execute("INSERT INTO tenants (tenant_id, display_name) VALUES ('later', 'Later')")

    assert consumer.drain() == 4
    rows = conn.execute(
        "SELECT conversation_id, body FROM broker_messages ORDER BY message_id"
    ).fetchall()
    principal_rows = [r for r in rows if r[1]["table"] == "principals"]
    assert [r[1]["data"]["principal_id"] for r in principal_rows] == [principal, principal]
    assert principal_rows[0][0] == principal_rows[1][0]  # still one conversation, in order
    assert principal_rows[0][0].startswith("principals:sha256:")
    assert rows[-1][1]["data"]["tenant_id"] == "later"
    assert dead_letters(conn) == []


def test_unusual_but_valid_values_are_captured_exactly(
    conn: psycopg.Connection[Any], consumer: CesConsumer
) -> None:
    conn.execute(
        "INSERT INTO tenants (tenant_id, display_name, created_at) "
        "VALUES ('forever', 'Ω \"quoted\" \\ tab\t', 'infinity')"
    )
    atom = hashlib.sha256(b"odd").digest()
    metadata = (
        '{"nested": [[1e-400, -0.0], {"k": 99999999999999999999999999.5}], '
        '"neg": -1E+308, "text": "\\u2028 ☃"}'
    )
    conn.execute(
        "INSERT INTO atoms (atom_id, kind, modality, subtype, size_bytes, metadata) "
        "VALUES (%s, 'leaf', 'text', 'plain', 0, %s::jsonb)",
        (atom, metadata),
    )
    conn.execute("INSERT INTO tenants (tenant_id, display_name) VALUES ('later', 'L')")

    assert consumer.drain() == 3
    assert dead_letters(conn) == []
    events = queued(conn)
    assert events[0]["data"]["created_at"] == "infinity"
    assert events[0]["data"]["display_name"] == 'Ω "quoted" \\ tab\t'
    assert events[1]["data"]["atom_id"] == atom.hex()
    same = conn.execute(
        "SELECT body->'data'->'metadata' = %s::jsonb FROM broker_messages "
        "WHERE body->>'table' = 'atoms'",
        (metadata,),
    ).fetchone()
    assert same == (True,)
    assert events[2]["data"]["tenant_id"] == "later"
