"""Row values arrive exact from the WAL to the event data, the SQL graph and Neo4j."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal

from neo4j import GraphDatabase
from tests.integration.sync.conftest import Source, drain

from hartonomous.config import Settings
from hartonomous.sync.projector import node_row

# The example, a number beyond the float range (was `Infinity`, which jsonb refuses),
# an integer beyond 64 bits and an ordinary fraction.
METADATA = (
    '{"n": 1.0000000000000000000001, "big": 1e400, '
    '"huge": 123456789012345678901234567890, "plain": 0.1}'
)


def insert_atom(source: Source, text: str) -> str:
    atom = hashlib.sha256(text.encode()).digest()
    source.conn.execute(
        "INSERT INTO atoms (atom_id, kind, modality, subtype, size_bytes, canonical_text, "
        "metadata) VALUES (%s, 'leaf', 'text', 'paragraph', %s, %s, %s::jsonb)",
        (atom, len(text), text, METADATA),
    )
    return atom.hex()


def test_jsonb_numbers_keep_their_precision_into_the_event_and_the_sql_graph(
    source: Source,
) -> None:
    atom = insert_atom(source, "exact")
    assert source.capture() == 1
    # The queued event carries the numbers verbatim (jsonb compares numerically, exactly).
    assert source.scalar(
        "SELECT body->'data'->'metadata' = %s::jsonb FROM broker_messages", METADATA
    )
    assert drain(source, Settings()).dead_lettered == 0
    stored = source.scalar(
        "SELECT properties->'metadata' FROM graph_nodes WHERE node_id = %s", f"atom:{atom}"
    )
    assert stored is not None
    assert source.scalar(
        "SELECT properties->'metadata' = %s::jsonb FROM graph_nodes WHERE node_id = %s",
        METADATA,
        f"atom:{atom}",
    )
    assert source.scalar(
        "SELECT (properties->'metadata'->>'n')::numeric - 1 FROM graph_nodes WHERE node_id = %s",
        f"atom:{atom}",
    ) == Decimal("1E-22")


def test_numbers_neo4j_cannot_hold_are_kept_as_exact_text(source: Source, graph_uri: str) -> None:
    atom = insert_atom(source, "exact in neo4j")
    source.capture()
    settings = Settings.model_validate({"neo4j": {"uri": graph_uri}})
    assert drain(source, settings).dead_lettered == 0
    with GraphDatabase.driver(graph_uri, auth=None) as driver:
        records, _, _ = driver.execute_query(
            "MATCH (a:Atom {node_id: $id}) RETURN a.metadata AS metadata", id=f"atom:{atom}"
        )
    metadata = json.loads(records[0]["metadata"], parse_float=Decimal)
    assert metadata == json.loads(METADATA, parse_float=Decimal)
    assert metadata["n"] == Decimal("1.0000000000000000000001")


def test_top_level_numbers_become_float_int_or_exact_text_for_neo4j() -> None:
    row = node_row(
        "n",
        None,
        {
            "plain": Decimal("0.1"),
            "n": Decimal("1.0000000000000000000001"),
            "big": Decimal("1E+400"),
            "count": 7,
            "huge": 2**70,
            "list": [Decimal("0.5"), 2],
            "mixed": [Decimal("1.0000000000000000000001"), 2],
        },
    )["props"]
    assert row["plain"] == 0.1
    assert isinstance(row["plain"], float)
    assert row["n"] == "1.0000000000000000000001"
    assert row["big"] == "1E+400"
    assert row["count"] == 7
    assert row["huge"] == str(2**70)
    assert row["list"] == [0.5, 2]
    assert row["mixed"] == "[1.0000000000000000000001,2]"


# PostgreSQL stores jsonb `1e5000` as a 5,001-digit integer, over Python's 4,300-digit
# int-string limit; a negative 4,400-digit integer deep in an array is the same kind.
LONG_INTEGERS = '{"n": 1e5000, "deep": [{"neg": -' + "7" * 4400 + '}], "small": 12}'


def test_integers_too_long_for_python_int_reach_the_sql_graph_digit_for_digit(
    source: Source,
) -> None:
    atom = hashlib.sha256(b"long integers").digest()
    source.conn.execute(
        "INSERT INTO atoms (atom_id, kind, modality, subtype, size_bytes, metadata) "
        "VALUES (%s, 'leaf', 'text', 'paragraph', 0, %s::jsonb)",
        (atom, LONG_INTEGERS),
    )
    assert source.capture() == 1
    assert source.scalar("SELECT count(*) FROM message_dead_letters") == 0
    assert source.scalar(
        "SELECT body->'data'->'metadata' = %s::jsonb FROM broker_messages", LONG_INTEGERS
    )
    assert drain(source, Settings()).dead_lettered == 0
    node = f"atom:{atom.hex()}"
    assert source.scalar(
        "SELECT properties->'metadata' = %s::jsonb FROM graph_nodes WHERE node_id = %s",
        LONG_INTEGERS,
        node,
    )
    assert (
        source.scalar(
            "SELECT properties->'metadata'->>'n' FROM graph_nodes WHERE node_id = %s", node
        )
        == "1" + "0" * 5000
    )
