"""Real rows for the operations routes: CDC events through the sync worker (as tests/sync do)."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from tests.integration.sync.conftest import Source, drain, libpq

from hartonomous.cdc import CesConsumer
from hartonomous.config import Settings

__all__ = ["Source", "drain_banned", "insert_dead_letters", "pipeline"]


@pytest.fixture
def pipeline(database_url: str) -> Iterator[Source]:
    """Writes rows as ingestion would and captures them as queued CloudEvents."""
    with psycopg.connect(libpq(database_url), autocommit=True) as conn:
        ces = CesConsumer(database_url, Settings())
        ces.prepare()
        try:
            yield Source(database_url, conn, ces)
        finally:
            ces.close()


def insert_dead_letters(source: Source, count: int, reason: str = "boom") -> list[int]:
    """``count`` dead letters as the broker writes them (test_broker_resilience_cli's shape)."""
    ids = []
    for n in range(count):
        row = source.conn.execute(
            "INSERT INTO message_dead_letters (message_id, queue_name, conversation_id, "
            "message_type, body, enqueued_at, attempts, reason, exception_type, "
            "exception_message, exception_traceback) VALUES (%s, 'hartonomous_message_queue', "
            "%s, '//Hartonomous/Message', %s, now(), 3, %s, 'builtins.KeyError', 'boom', 'tb') "
            "RETURNING dead_letter_id",
            (1000 + n, f"c{n}", f'{{"id": "e{n}", "amount": 1.000000000000000000001}}', reason),
        ).fetchone()
        assert row is not None
        ids.append(int(row[0]))
    return ids


def drain_banned(source: Source) -> int:
    """The dead letter of a holding whose tenant is banned (the sync worker refuses it)."""
    source.tenant("acme")
    source.ingest("acme", 1)
    source.capture()
    banned = Settings.model_validate({"security": {"banned_tenants": ["acme"]}})
    drain(source, banned)
    return int(
        source.scalar(
            "SELECT dead_letter_id FROM message_dead_letters WHERE body->>'table' = 'holdings'"
        )
    )
