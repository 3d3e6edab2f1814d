"""`BinaryArray` parameters arrive in PostgreSQL exactly as the list held them."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import Engine, text

from hartonomous.db.array_param import BinaryArray

# What the text array format has to quote or escape, and what it cannot tell from NULL
# without quoting: each must arrive as it was.
AWKWARD_TEXT = [
    'a "quoted" word',
    "back\\slash",
    "comma, and {braces}",
    "NULL",
    "",
    " spaced ",
    "ünïcødé ✓",
    None,
]


@pytest.mark.parametrize(
    ("values", "sql_type"),
    [
        (AWKWARD_TEXT, "text[]"),
        ([b"\x00\x01\\x", b"", None, bytes(range(256))], "bytea[]"),
        ([0, 1, None, 2**40], "bigint[]"),
        ([3, 70_000], "int[]"),
        ([uuid.uuid4(), None, uuid.uuid4()], "uuid[]"),
    ],
)
def test_binary_arrays_round_trip(engine: Engine, values: list[object], sql_type: str) -> None:
    with engine.connect() as connection:
        back = connection.execute(
            text(f"SELECT CAST(:values AS {sql_type})"), {"values": BinaryArray(values)}
        ).scalar_one()
    assert [bytes(v) if isinstance(v, memoryview) else v for v in back] == values


def test_empty_and_null_only_arrays(engine: Engine) -> None:
    # No element type to send in binary: psycopg sends these as text, and they still arrive.
    with engine.connect() as connection:
        empty, nulls = connection.execute(
            text("SELECT CAST(:empty AS bytea[]), CAST(:nulls AS text[])"),
            {"empty": BinaryArray([]), "nulls": BinaryArray([None, None])},
        ).one()
    assert (empty, nulls) == ([], [None, None])
