"""Lists sent as one query parameter in PostgreSQL's binary array format.

Statements that write a batch of rows take each column as one array parameter (``unnest``),
so their text and server-side plan are the same whatever the batch size. psycopg sends a plain
``list`` in the text array format: every element is formatted on its own, and one that needs
quoting (a ``bytea``'s ``\\x…`` hex, a path with a space) goes through a regular expression,
about 3-4 µs of Python per element: the largest Python cost of storing a batch of small files
(docs/ingest.md, "Measured"). A `BinaryArray` is sent with psycopg's binary list dumper instead
(``array_recv``'s format: each element's own binary form, ``bytes`` as they are).

Element types follow the first non-null element as psycopg maps it (``bytes`` -> ``bytea``,
``str`` -> ``text``, ``int`` -> the smallest integer type that holds every element, ``UUID``
-> ``uuid``); the SQL casts the parameter to the column's array type, as for a plain list. An
empty list, or one of ``None`` only, has no element type and is sent as text.
"""

from __future__ import annotations

from typing import TypeVar

import psycopg
from psycopg.types.array import ListBinaryDumper

_Element = TypeVar("_Element")


class BinaryArray(list[_Element]):
    """A ``list`` that psycopg sends as a binary array parameter; otherwise a plain list."""

    __slots__ = ()


# Only this module's own class is dumped this way: every other list is sent as before.
psycopg.adapters.register_dumper(BinaryArray, ListBinaryDumper)
