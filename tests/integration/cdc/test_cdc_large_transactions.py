"""Transactions larger than a batch: handled in chunks, checkpointed mid-way, exactly once."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import psycopg
import pytest
from tests.conftest import Cli

from hartonomous.cdc import CesConsumer
from hartonomous.cdc.consumer import Frontier
from hartonomous.config import Settings


def small_batches(size: int) -> Settings:
    settings = Settings()
    settings.cdc.batch_size = size
    return settings


def insert_tenants(conn: psycopg.Connection[Any], prefix: str, count: int) -> None:
    conn.execute(
        "INSERT INTO tenants (tenant_id, display_name) "
        "SELECT %s || g, 'n' FROM generate_series(0, %s - 1) AS g",
        (prefix, count),
    )


def tenant_events(conn: psycopg.Connection[Any]) -> tuple[int, int, int]:
    row = conn.execute(
        "SELECT count(*), count(DISTINCT body->>'id'), count(DISTINCT body->'data'->>'tenant_id') "
        "FROM broker_messages WHERE body->>'table' = 'tenants'"
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def checkpoint(conn: psycopg.Connection[Any]) -> tuple[str, int]:
    row = conn.execute("SELECT last_lsn, next_change_index FROM cdc_checkpoints").fetchone()
    assert row is not None
    return str(row[0]), int(row[1])


class _DiesAfterChunks(CesConsumer):
    """Dies after committing a few chunks of a transaction: in the middle of it."""

    chunks_left = 3

    def _write(self, *args: Any, **kwargs: Any) -> None:
        if self.chunks_left == 0:
            raise KeyboardInterrupt("simulated crash")
        self.chunks_left -= 1
        super()._write(*args, **kwargs)


def test_a_transaction_larger_than_the_batch_arrives_whole_exactly_once_across_a_crash(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    settings = small_batches(50)
    first = CesConsumer(database_url, settings)
    first.prepare()
    first.close()
    insert_tenants(conn, "big", 1000)  # one transaction of 1,000 changes, 20 batches
    insert_tenants(conn, "after", 3)

    crashing = _DiesAfterChunks(database_url, settings)
    with pytest.raises(KeyboardInterrupt):
        crashing.drain()
    crashing.close()
    assert tenant_events(conn) == (150, 150, 150)  # three chunks committed, in order
    _, index = checkpoint(conn)
    assert index == 150  # the checkpoint sits inside the transaction

    consumer = CesConsumer(database_url, settings)
    try:
        assert consumer.drain() == 1003 - 150
    finally:
        consumer.close()
    assert tenant_events(conn) == (1003, 1003, 1003)
    order = [
        row[0]
        for row in conn.execute(
            "SELECT body->'data'->>'tenant_id' FROM broker_messages ORDER BY message_id"
        )
    ]
    assert order == [f"big{n}" for n in range(1000)] + [f"after{n}" for n in range(3)]
    assert checkpoint(conn)[1] == 0  # back on a transaction boundary


def test_frontier_orders_changes_by_commit_position_then_index() -> None:
    middle = Frontier(0x200, 3)
    assert middle.covers(0x100, 999)  # an earlier transaction
    assert middle.covers(0x200, 2)
    assert not middle.covers(0x200, 3)
    assert not middle.covers(0x300, 0)
    boundary = Frontier(0x200)
    assert not boundary.covers(0x200, 0)  # a commit starting where the last one ended
    assert Frontier(0x200, 5) > Frontier(0x200, 3) > Frontier(0x1FF, 9)


def test_sigkill_in_the_middle_of_a_large_transaction_loses_and_duplicates_nothing(
    cli: Cli, conn: psycopg.Connection[Any]
) -> None:
    cli.env["HARTONOMOUS_CDC__BATCH_SIZE"] = "50"
    assert cli("ces-consumer", "--once").exit_code == 0
    rows = 40_000
    insert_tenants(conn, "k", rows)
    process = cli.spawn("ces-consumer")
    try:
        # Kill it as soon as a chunk of the transaction (not all of it) is committed.
        deadline = time.monotonic() + 120
        while checkpoint(conn)[1] == 0:
            assert time.monotonic() < deadline, "the consumer never checkpointed mid-transaction"
            assert process.poll() is None
            time.sleep(0.005)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    killed_at = tenant_events(conn)[0]
    assert 0 < killed_at < rows
    result = cli("--json", "ces-consumer", "--once")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["events"] == rows - killed_at
    assert tenant_events(conn) == (rows, rows, rows)


def atom_events(conn: psycopg.Connection[Any]) -> list[tuple[int, int]]:
    """(size_bytes, length of canonical_text) of every queued atoms event, in queue order."""
    return [
        (int(row[0]), int(row[1]))
        for row in conn.execute(
            "SELECT (body->'data'->>'size_bytes')::int, length(body->'data'->>'canonical_text') "
            "FROM broker_messages WHERE body->>'table' = 'atoms' ORDER BY message_id"
        )
    ]


def test_a_transaction_of_wide_rows_over_the_byte_budget_arrives_whole_exactly_once(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    settings = small_batches(250)  # the row count alone would make it one chunk
    settings.cdc.chunk_bytes = 64 * 1024
    first = CesConsumer(database_url, settings)
    first.prepare()
    first.close()
    # One transaction: 12 rows of ~20 KB and, in the middle, one of 100 KB, larger than the
    # budget on its own (~340 KB in all, so at least 5 chunks).
    sizes = [20_000 + n for n in range(6)] + [100_000] + [20_010 + n for n in range(6)]
    with conn.transaction():
        for n, size in enumerate(sizes):
            conn.execute(
                "INSERT INTO atoms (atom_id, kind, modality, subtype, size_bytes, canonical_text) "
                "VALUES (sha256(%s::bytea), 'leaf', 'text', 'plain', %s, "
                "left(repeat(md5(%s), %s / 32 + 1), %s))",
                (f"wide{n}".encode(), size, str(n), size, size),
            )

    crashing = _DiesAfterChunks(database_url, settings)
    crashing.chunks_left = 2
    with pytest.raises(KeyboardInterrupt):
        crashing.drain()
    crashing.close()
    committed = atom_events(conn)
    assert 0 < len(committed) < len(sizes)  # two chunks, bounded by bytes, not by rows
    assert checkpoint(conn)[1] == len(committed)  # the checkpoint sits inside the transaction

    consumer = CesConsumer(database_url, settings)
    try:
        assert consumer.drain() == len(sizes) - len(committed)
    finally:
        consumer.close()
    assert atom_events(conn) == [(size, size) for size in sizes]  # whole, once, in order
    assert checkpoint(conn)[1] == 0
