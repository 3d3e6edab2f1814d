"""Real rows for the operations routes: CDC events through the sync worker (as tests/sync do)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from tests.integration.sync.conftest import Source, drain
from tests.integration.sync.conftest import source as pipeline

from hartonomous.config import Settings

__all__ = ["Source", "all_pages", "drain_banned", "insert_dead_letters", "pipeline"]


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


def all_pages(
    api: TestClient, url: str, headers: dict[str, str]
) -> tuple[list[dict[str, Any]], int]:
    """Every item of a listing, following ``next_cursor``; and how many pages it took."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        # A cursor is base64url text and a dot: safe in a query string as it is.
        answer = api.get(url + (f"&cursor={cursor}" if cursor else ""), headers=headers)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        items += page["items"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            return items, pages
