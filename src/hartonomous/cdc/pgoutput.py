"""A decoder for the pgoutput logical replication protocol, version 1.

psycopg 3 has no streaming-replication support, so the consumer reads the slot through the SQL
interface (`pg_logical_slot_peek_binary_changes`), which returns the same binary messages the
walsender would stream. Only what change capture needs is decoded: transactions, relations,
types and row changes (text-format tuples).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

POSTGRES_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


class ProtocolError(ValueError):
    """A message this decoder does not understand (a bug or an unsupported protocol)."""


def lsn_to_text(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def lsn_from_text(text: str) -> int:
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


@dataclass(frozen=True)
class Column:
    name: str
    type_oid: int
    is_key: bool


@dataclass(frozen=True)
class Begin:
    final_lsn: int
    commit_time: datetime
    xid: int


@dataclass(frozen=True)
class Commit:
    commit_lsn: int
    end_lsn: int
    commit_time: datetime


@dataclass(frozen=True)
class Relation:
    oid: int
    namespace: str
    name: str
    replica_identity: str
    columns: tuple[Column, ...]


@dataclass(frozen=True)
class TypeInfo:
    oid: int
    namespace: str
    name: str


# One column value of a tuple: None is SQL NULL, UNCHANGED an unchanged TOASTed value.
UNCHANGED = object()
Value = str | None | object


@dataclass(frozen=True)
class Change:
    kind: str  # insert / update / delete
    relation_oid: int
    new: tuple[Value, ...] | None
    old: tuple[Value, ...] | None
    old_is_key_only: bool


@dataclass(frozen=True)
class Truncate:
    relation_oids: tuple[int, ...]


@dataclass(frozen=True)
class Ignored:
    tag: str


Message = Begin | Commit | Relation | TypeInfo | Change | Truncate | Ignored


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, fmt: str) -> int:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise ProtocolError("message truncated")
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return int(value)

    def byte(self) -> str:
        return chr(self.take("!B"))

    def string(self) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise ProtocolError("unterminated string")
        value = self.data[self.pos : end].decode()
        self.pos = end + 1
        return value

    def raw(self, length: int) -> bytes:
        if self.pos + length > len(self.data):
            raise ProtocolError("message truncated")
        value = self.data[self.pos : self.pos + length]
        self.pos += length
        return value

    def timestamp(self) -> datetime:
        return POSTGRES_EPOCH + timedelta(microseconds=self.take("!q"))

    def tuple_data(self) -> tuple[Value, ...]:
        values: list[Value] = []
        for _ in range(self.take("!H")):
            kind = self.byte()
            if kind == "n":
                values.append(None)
            elif kind == "u":
                values.append(UNCHANGED)
            elif kind in ("t", "b"):
                values.append(self.raw(self.take("!I")).decode())
            else:
                raise ProtocolError(f"unknown tuple value kind {kind!r}")
        return tuple(values)


def _begin(reader: _Reader) -> Message:
    return Begin(reader.take("!Q"), reader.timestamp(), reader.take("!I"))


def _commit(reader: _Reader) -> Message:
    reader.take("!B")  # flags (unused)
    return Commit(reader.take("!Q"), reader.take("!Q"), reader.timestamp())


def _relation(reader: _Reader) -> Message:
    oid = reader.take("!I")
    namespace, name = reader.string(), reader.string()
    identity = reader.byte()
    columns = []
    for _ in range(reader.take("!H")):
        flags = reader.take("!B")
        column_name = reader.string()
        type_oid = reader.take("!I")
        reader.take("!i")  # typmod
        columns.append(Column(column_name, type_oid, bool(flags & 1)))
    return Relation(oid, namespace, name, identity, tuple(columns))


def _type(reader: _Reader) -> Message:
    return TypeInfo(reader.take("!I"), reader.string(), reader.string())


def _insert(reader: _Reader) -> Message:
    oid = reader.take("!I")
    if reader.byte() != "N":
        raise ProtocolError("insert without a new tuple")
    return Change("insert", oid, reader.tuple_data(), None, False)


def _update(reader: _Reader) -> Message:
    oid = reader.take("!I")
    marker = reader.byte()
    old: tuple[Value, ...] | None = None
    key_only = False
    if marker in ("K", "O"):
        key_only = marker == "K"
        old = reader.tuple_data()
        marker = reader.byte()
    if marker != "N":
        raise ProtocolError("update without a new tuple")
    return Change("update", oid, reader.tuple_data(), old, key_only)


def _delete(reader: _Reader) -> Message:
    oid = reader.take("!I")
    marker = reader.byte()
    if marker not in ("K", "O"):
        raise ProtocolError("delete without an old tuple")
    return Change("delete", oid, None, reader.tuple_data(), marker == "K")


def _truncate(reader: _Reader) -> Message:
    count = reader.take("!I")
    reader.take("!B")  # options
    return Truncate(tuple(reader.take("!I") for _ in range(count)))


_DECODERS: dict[str, Callable[[_Reader], Message]] = {
    "B": _begin,
    "C": _commit,
    "R": _relation,
    "Y": _type,
    "I": _insert,
    "U": _update,
    "D": _delete,
    "T": _truncate,
    "O": lambda _reader: Ignored("O"),
    "M": lambda _reader: Ignored("M"),
}


def decode(data: bytes) -> Message:
    """Decode one pgoutput message."""
    if not data:
        raise ProtocolError("empty message")
    reader = _Reader(data)
    tag = reader.byte()
    decoder = _DECODERS.get(tag)
    if decoder is None:
        raise ProtocolError(f"unknown pgoutput message {tag!r}")
    return decoder(reader)
