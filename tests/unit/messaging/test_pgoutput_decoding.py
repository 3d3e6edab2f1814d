"""The pgoutput decoder and the row → CloudEvent mapping, on hand-built protocol messages."""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from hartonomous.cdc.events import json_value, to_event
from hartonomous.cdc.pgoutput import (
    UNCHANGED,
    Begin,
    Change,
    Commit,
    ProtocolError,
    Relation,
    Truncate,
    TypeInfo,
    decode,
    lsn_from_text,
    lsn_to_text,
)
from hartonomous.json_types import exact_dumps
from hartonomous.messaging import parse_cloudevent

COMMIT_MICROS = 789_000_000_000_000  # 2025 in PostgreSQL's epoch


def cstr(text: str) -> bytes:
    return text.encode() + b"\0"


def tuple_data(*values: str | None) -> bytes:
    out = struct.pack("!H", len(values))
    for value in values:
        if value is None:
            out += b"n"
        elif value == "<unchanged>":
            out += b"u"
        else:
            raw = value.encode()
            out += b"t" + struct.pack("!I", len(raw)) + raw
    return out


def relation_message() -> bytes:
    columns = [(1, "tenant_id", 1043), (0, "display_name", 1043), (0, "is_active", 16)]
    body = struct.pack("!I", 16384) + cstr("public") + cstr("tenants") + b"d"
    body += struct.pack("!H", len(columns))
    for flags, name, oid in columns:
        body += struct.pack("!B", flags) + cstr(name) + struct.pack("!Ii", oid, -1)
    return b"R" + body


def test_transaction_messages() -> None:
    begin = decode(b"B" + struct.pack("!QqI", 0x16B3748, COMMIT_MICROS, 42))
    assert isinstance(begin, Begin)
    assert begin.xid == 42
    commit = decode(b"C" + struct.pack("!BQQq", 0, 0x16B3748, 0x16B3780, COMMIT_MICROS))
    assert isinstance(commit, Commit)
    assert lsn_to_text(commit.end_lsn) == "0/16B3780"
    assert commit.commit_time.year >= 2024


def test_relation_and_changes() -> None:
    relation = decode(relation_message())
    assert isinstance(relation, Relation)
    assert [c.name for c in relation.columns if c.is_key] == ["tenant_id"]
    insert = decode(b"I" + struct.pack("!I", 16384) + b"N" + tuple_data("acme", "Acme", "t"))
    assert insert == Change("insert", 16384, ("acme", "Acme", "t"), None, False)
    update = decode(
        b"U" + struct.pack("!I", 16384) + b"N" + tuple_data("acme", "<unchanged>", None)
    )
    assert isinstance(update, Change)
    assert update.new == ("acme", UNCHANGED, None)
    delete = decode(b"D" + struct.pack("!I", 16384) + b"K" + tuple_data("acme", None, None))
    assert isinstance(delete, Change)
    assert delete.old_is_key_only
    truncate = decode(b"T" + struct.pack("!IBII", 2, 0, 1, 2))
    assert truncate == Truncate((1, 2))
    assert isinstance(
        decode(b"Y" + struct.pack("!I", 9) + cstr("public") + cstr("vector")), TypeInfo
    )


@pytest.mark.parametrize("bad", [b"", b"Z", b"I" + struct.pack("!I", 1) + b"X", b"R\x00"])
def test_garbage_is_refused(bad: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode(bad)


def test_lsn_text_round_trip() -> None:
    assert lsn_from_text("1/2A") == (1 << 32) | 0x2A
    assert lsn_to_text(lsn_from_text("AB/CDEF0123")) == "AB/CDEF0123"


def test_values_become_plain_json() -> None:
    assert json_value("t", 16, None) is True
    assert json_value("42", 20, None) == 42
    assert json_value("1.5", 701, None) == 1.5
    assert json_value("NaN", 701, None) == "NaN"
    numeric = json_value("0.010500", 1700, None)  # numeric keeps its exact digits
    assert isinstance(numeric, Decimal)
    assert str(numeric) == "0.010500"
    assert json_value("NaN", 1700, None) == "NaN"
    assert json_value("-Infinity", 1700, None) == "-Infinity"
    assert json_value('{"a": [1]}', 3802, None) == {"a": [1]}
    exact = json_value('{"n": 1.0000000000000000000001, "big": 1e400}', 3802, None)
    assert exact == {"n": Decimal("1.0000000000000000000001"), "big": Decimal("1e400")}
    assert exact_dumps(exact) == '{"n":1.0000000000000000000001,"big":1E+400}'
    assert json_value("infinity", 1184, None) == "infinity"
    assert json_value("{1,NULL,3}", 1007, None) == "{1,NULL,3}"  # arrays: PostgreSQL text
    assert json_value("[1,2,3]", 99999, "vector") == [1, 2, 3]
    assert json_value("2025-01-02 03:04:05.5+00", 1184, None) == "2025-01-02T03:04:05.5+00:00"
    assert json_value("\\xdeadbeef", 17, None) == "deadbeef"


def test_a_change_maps_to_a_deterministic_cloudevent() -> None:
    relation = decode(relation_message())
    assert isinstance(relation, Relation)
    begin = Begin(0x100, datetime(2025, 1, 1, tzinfo=UTC), 7)
    change = Change("insert", 16384, ("acme", "Acme", "t"), None, False)
    first = to_event(change, relation=relation, type_names={}, begin=begin, index=0, database="d")
    again = to_event(change, relation=relation, type_names={}, begin=begin, index=0, database="d")
    other = to_event(change, relation=relation, type_names={}, begin=begin, index=1, database="d")
    event = parse_cloudevent(first.body)
    assert event.get_id() == again.body["id"] != other.body["id"]
    assert event.get_type() == "io.hartonomous.cdc.tenants.insert"
    assert event.get_extension("tenantid") == "acme"
    assert event.get_extension("lsn") == "0/100"  # the commit's LSN, known at its Begin
    assert event.get_data() == {"tenant_id": "acme", "display_name": "Acme", "is_active": True}
    assert first.conversation_id == 'tenants:["acme"]'
