"""One COPY of an export's rows split over several PostgreSQL sessions (docs/billing.md,
"Export").

PostgreSQL's output of the rows (each column's text, CSV quoting) is the export's cost, and
one COPY runs on one core. The period's rows, in file order (tenant, recording time, event
id), are cut into consecutive key ranges; each range is copied by its own session, all
reading the snapshot of the caller's transaction (``pg_export_snapshot``), and the ranges are
written one after the other. The file is therefore byte for byte the one a single COPY would
write: the ranges only decide who prints which rows.

The cuts come from the rollup's row counts per tenant and day (``billing_usage_rollup``), an
estimate that only balances the work: every row falls in exactly one range whatever the
counts say, because the ranges are bounded by (tenant, time) keys of the ledger's own order.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import queue
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any, BinaryIO

import psycopg
from psycopg import sql
from psycopg.abc import Buffer

Connection = psycopg.Connection[Any]

# Bytes gathered before each write and hash update: COPY hands over one row at a time.
BLOCK = 1 << 20

Hasher = Any  # hashlib's hash objects have no public type

# A range's lower and upper bound: (tenant_id, recorded_at); None is open.
Bound = tuple[str, datetime] | None

_ROWS_PER_DAY = """
SELECT tenant_id, day, sum(row_count) FROM billing_usage_rollup
WHERE billing_period = %(period)s AND (%(tenant)s::text IS NULL OR tenant_id = %(tenant)s)
GROUP BY tenant_id, day ORDER BY tenant_id, day
"""


def stream_count() -> int:
    """Sessions an export copies its rows with: one per core this process may run on, at
    most 4. Each session keeps a database backend busy printing rows and a share of this
    process reading them; on a 2-core machine two sessions measured 1.1-1.7x one, once the
    period's pages stayed in the server's buffer cache (docs/billing.md, "Measured")."""
    return max(1, min(4, len(os.sched_getaffinity(0))))


# Each range is read through the index in the file's order (billing_period, tenant_id,
# recorded_at, event_id): the planner, which costs the index's random heap reads above a sort,
# otherwise sorts a range's rows, spilling to disk beyond work_mem (docs/billing.md,
# "Measured"). Set for the COPY only; the previous value comes back.
_IN_ORDER = "SELECT current_setting('enable_sort'), set_config('enable_sort', 'off', true)"
_RESTORE_SORT = "SELECT set_config('enable_sort', %(previous)s, true)"


@dataclass(frozen=True)
class Described:
    """What was written: its size in bytes and SHA-256 (hex)."""

    size_bytes: int
    sha256: str


def key_ranges(
    connection: Connection, period: date, tenant_id: str | None, streams: int
) -> list[tuple[Bound, Bound]]:
    """At most ``streams`` consecutive ranges of (tenant_id, recorded_at) covering every row
    of ``period`` (and of ``tenant_id`` when given), each holding about as many rows by the
    rollup's counts. One open range when there is nothing to split."""
    if streams < 2:
        return [(None, None)]
    counts = connection.execute(_ROWS_PER_DAY, {"period": period, "tenant": tenant_id}).fetchall()
    total = sum(int(row[2]) for row in counts)
    cuts: list[tuple[str, datetime]] = []
    seen = 0
    for index, (_tenant, _day, rows) in enumerate(counts):
        seen += int(rows)
        # A cut starts the next range at the next (tenant, day): at midnight UTC of that day.
        if seen * streams >= total * (len(cuts) + 1) and index + 1 < len(counts):
            next_tenant, next_day = counts[index + 1][0], counts[index + 1][1]
            cuts.append((str(next_tenant), datetime.combine(next_day, time(), UTC)))
            if len(cuts) == streams - 1:
                break
    bounds: list[Bound] = [None, *cuts, None]
    return list(itertools.pairwise(bounds))


def range_condition(lower: Bound, upper: Bound) -> sql.Composed:
    """``AND`` conditions keeping the rows of [lower, upper) in (tenant_id, recorded_at)."""
    parts: list[sql.Composable] = []
    if lower is not None:
        parts.append(
            sql.SQL(" AND (tenant_id, recorded_at) >= ({}, {})").format(
                sql.Literal(lower[0]), sql.Literal(lower[1])
            )
        )
    if upper is not None:
        parts.append(
            sql.SQL(" AND (tenant_id, recorded_at) < ({}, {})").format(
                sql.Literal(upper[0]), sql.Literal(upper[1])
            )
        )
    return sql.Composed(parts)


def copy_in_ranges(
    connection: Connection,
    helpers: Sequence[Connection],
    copies: Sequence[sql.Composed],
    target: Path,
    out: BinaryIO | None = None,
) -> Described:
    """Run ``copies`` (COPY … TO STDOUT statements of consecutive ranges, in file order) and
    write their output, in that order, to ``target`` (or to ``out``, an open binary stream
    such as a pipe, when given; the helpers' part files are still named after ``target``);
    its size and SHA-256.

    The first runs on ``connection`` (in the caller's REPEATABLE READ transaction), the others
    each on a helper (autocommit, outside a transaction: ``len(helpers) >= len(copies) - 1``),
    in a thread, in a REPEATABLE READ transaction on the caller's snapshot, into a hidden file
    beside ``target`` appended after the earlier ranges and removed. A failure of any range
    cancels the others and is raised once every session is idle again."""
    if len(copies) - 1 > len(helpers):
        raise ValueError(f"{len(copies)} ranges need {len(copies) - 1} helper sessions")
    parts = [target.with_name(f".{target.name}.part{index}") for index in range(1, len(copies))]
    snapshot = ""
    if parts:
        row = connection.execute("SELECT pg_export_snapshot()").fetchone()
        assert row is not None
        snapshot = str(row[0])
    failed = threading.Event()
    with ThreadPoolExecutor(max_workers=max(1, len(parts))) as pool:
        futures: list[Future[None]] = [
            pool.submit(_copy_range, helper, snapshot, copy, part, failed)
            for helper, copy, part in zip(helpers, copies[1:], parts, strict=False)
        ]
        try:
            with nullcontext(out) if out is not None else target.open("wb", buffering=0) as sink:
                digest = hashlib.sha256()
                row = connection.execute(_IN_ORDER).fetchone()
                assert row is not None
                with connection.cursor().copy(copies[0]) as stream:
                    size = write_blocks(stream, sink, digest)
                connection.execute(_RESTORE_SORT, {"previous": row[0]})
                for future, part in zip(futures, parts, strict=True):
                    future.result()
                    with part.open("rb") as handle:
                        size += write_blocks(iter(lambda: handle.read(BLOCK), b""), sink, digest)
                    part.unlink()
        except BaseException:
            failed.set()
            for helper, future in zip(helpers, futures, strict=False):
                if not future.done():
                    helper.cancel_safe()
            for part in parts:
                part.unlink(missing_ok=True)
            raise
    return Described(size, digest.hexdigest())


def _copy_range(
    connection: Connection,
    snapshot: str,
    copy: sql.Composed,
    part: Path,
    failed: threading.Event,
) -> None:
    if failed.is_set():
        return
    connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    try:
        with connection.transaction():
            connection.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
            connection.execute(_IN_ORDER)
            with part.open("wb", buffering=0) as out, connection.cursor().copy(copy) as stream:
                write_blocks(stream, out, None)
    finally:
        connection.isolation_level = None


class _Sink:
    """Writes (and hashes) blocks in a thread of its own, so that SHA-256 and the file writes,
    which release the GIL, run beside the reading of COPY's rows on another core (hashing
    alone was about a sixth of the exporting process's CPU time). At most 8 blocks wait."""

    def __init__(self, out: BinaryIO, digest: Hasher | None) -> None:
        self._queue: queue.Queue[bytes | bytearray | None] = queue.Queue(maxsize=8)
        self._out = out
        self._digest = digest
        self._size = 0
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="export-sink", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (block := self._queue.get()) is not None:
            if self._error is not None:
                continue  # drained, not written: close() raises the error
            try:
                self._out.write(block)
                if self._digest is not None:
                    self._digest.update(block)
                self._size += len(block)
            except BaseException as exc:  # noqa: BLE001 - raised by put() or close()
                self._error = exc

    def put(self, block: bytes | bytearray) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(block)

    def close(self) -> int:
        """Wait until every block is written; the bytes written. Raises the write's error."""
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._size


def write_blocks(blocks: Iterable[Buffer], out: BinaryIO, digest: Hasher | None) -> int:
    """Write ``blocks`` to ``out`` (and into ``digest``) gathered into writes of about
    ``BLOCK`` bytes; the bytes written.

    COPY hands over one row per call, so this loop runs once per row: it appends the row to
    a ``bytearray`` and hands a full one to the writing thread as it is, starting a new one
    (about 0.3-0.5 s of CPU per million 730-byte rows, as a list joined per block took)."""
    sink = _Sink(out, digest)
    try:
        pending = bytearray()
        for block in blocks:
            pending += block
            if len(pending) >= BLOCK:
                sink.put(pending)
                pending = bytearray()
        sink.put(pending)
    finally:
        size = sink.close()
    return size
