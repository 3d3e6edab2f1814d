"""Vectors as one query parameter in PostgreSQL's binary array format: a `real[]` (float4).

Writing a 384-dimension vector in pgvector's text form costs about 0.1 ms of Python per vector
(each value formatted on its own); packing many vectors into one binary `real[]` with numpy
costs microseconds. The SQL casts the parameter, slices each vector out and casts it to
`vector` (pgvector's `real[]` to `vector` cast), for example
``CAST((CAST(:values AS real[]))[start + 1 : start + dimension] AS vector)``.

The binary array format is PostgreSQL's `array_send`/`array_recv` (src/backend/utils/adt/
arrayfuncs.c): number of dimensions, a has-nulls flag, the element type's OID, then per
dimension its length and lower bound, then each element as its length and its bytes (a
`float4` is 4 bytes, IEEE 754, big-endian). Integers are 4-byte big-endian.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg.adapt import Dumper
from psycopg.pq import Format

FLOAT4_OID = 700  # pg_type.oid of float4 (`real`), fixed in PostgreSQL's catalog


class Float4Array:
    """Vectors concatenated in order, sent as one binary `real[]` query parameter.

    ``starts[i]`` is where vector ``i`` begins (0-based; SQL arrays are 1-based, so it is
    ``values[start + 1 : start + length]`` there).
    """

    __slots__ = ("starts", "values")

    def __init__(self, vectors: Sequence[npt.NDArray[np.float32]]) -> None:
        flat = [np.asarray(vector, dtype=np.float32).ravel() for vector in vectors]
        lengths = [len(vector) for vector in flat]
        self.starts = [sum(lengths[:index]) for index in range(len(lengths))]
        self.values = np.concatenate(flat) if flat else np.empty(0, dtype=np.float32)


class _Float4ArrayDumper(Dumper):
    # oid 0: the server takes the parameter's type from the SQL's CAST(… AS real[]), and
    # psycopg's own dumpers for real[] (by oid) stay untouched.
    format = Format.BINARY

    def dump(self, obj: Float4Array) -> bytes:
        count = len(obj.values)
        if count == 0:
            return struct.pack(">iii", 0, 0, FLOAT4_OID)
        elements = np.empty(count, dtype=[("length", ">i4"), ("value", ">f4")])
        elements["length"] = 4
        elements["value"] = obj.values
        return struct.pack(">iiiii", 1, 0, FLOAT4_OID, count, 1) + elements.tobytes()


# Only objects of this module's own class are dumped this way: nothing else changes.
psycopg.adapters.register_dumper(Float4Array, _Float4ArrayDumper)
