"""Reference counts live outside change data capture: ingesting a multi-chunk file publishes one
`atoms.insert` per new atom and no `atoms.update` for reference counts (the only update is the
file's atom getting its label), and referencing the same atoms again (another tenant's holding)
publishes no `atoms` event at all."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Engine
from tests.integration.data_plane.data_plane_support import (
    add_tenant,
    assert_store_consistent,
    atom_ids,
    ingest,
    random_bytes,
    reference_counts,
)

from hartonomous.atoms.chunking import DEFAULT_MAX_SIZE
from hartonomous.cdc import CesConsumer
from hartonomous.db.connection import libpq_url

ATOMS_INSERT = "io.hartonomous.cdc.atoms.insert"
ATOMS_UPDATE = "io.hartonomous.cdc.atoms.update"


def _published(consumer: CesConsumer, database_url: str) -> list[dict[str, Any]]:
    """Publish what is pending, then return every published event in order."""
    consumer.drain()
    url = libpq_url(database_url)
    with psycopg.connect(url, autocommit=True) as conn:
        return [
            row[0] for row in conn.execute("SELECT body FROM broker_messages ORDER BY message_id")
        ]


def test_ingesting_publishes_no_atom_updates_for_reference_counts(
    consumer: CesConsumer, database_url: str, engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "blob.bin"
    path.write_bytes(random_bytes(5 * DEFAULT_MAX_SIZE))
    (file,) = ingest(engine, add_tenant(engine, "acme"), path).files
    stored = atom_ids(engine)
    assert len(stored) > 3  # several chunks and at least one composite over them
    assert set(reference_counts(engine)) == stored  # every atom has its count row

    first = _published(consumer, database_url)
    types = Counter(event["type"] for event in first)
    assert types[ATOMS_INSERT] == len(stored)
    updates = [event["data"] for event in first if event["type"] == ATOMS_UPDATE]
    # The file's atom, stored as a bare span of chunks, gets its label: no other update.
    assert [(u["atom_id"], u["subtype"]) for u in updates] == [(file.atom_id, "octet-stream")]

    ingest(engine, add_tenant(engine, "globex"), path)
    second = _published(consumer, database_url)[len(first) :]
    assert not [event for event in second if ".cdc.atoms." in event["type"]]
    assert Counter(event["type"] for event in second)["io.hartonomous.cdc.holdings.insert"] == 1
    assert_store_consistent(engine)
