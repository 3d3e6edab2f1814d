"""Ledger exports for finance systems: one billing period's rows as CSV or Parquet, with a
manifest, and the check of a delivered export (docs/billing.md, "Export").

An export is a directory holding

- ``ledger-<YYYY-MM>.csv`` (RFC 4180, a header row, ``\\n`` line ends) or
  ``ledger-<YYYY-MM>.parquet`` (Apache Parquet, zstd): one row per ledger row, ordered by
  tenant, recording time and event id; money columns are NUMERIC(18,6) written with all six
  decimals (Parquet: ``decimal128(18, 6)``), never a float;
- ``manifest.json``: the format version, period, tenant filter, row count, totals (units,
  DCU, cost as decimal strings) per operation and currency, and each data file's size and
  SHA-256.

Nothing in either depends on when the export ran, so the same rows export to the same bytes.
Rows and totals are read in one REPEATABLE READ transaction: the manifest describes exactly the
rows written. The files are written into a hidden sibling directory that is renamed into place
only when complete: a failed export leaves nothing.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from psycopg import sql

from hartonomous.billing.export_streams import copy_in_ranges, key_ranges, range_condition
from hartonomous.billing.periods import period_label
from hartonomous.errors import ConflictError, UsageError

__all__ = [
    "EXPORT_FORMAT_VERSION",
    "ExportDirectoryNotEmptyError",
    "ExportFormat",
    "ExportManifest",
    "ExportVerification",
    "InvalidPeriodError",
    "export_period",
    "parse_period",
    "verify_export",
    "write_period",
]

Connection = psycopg.Connection[Any]

EXPORT_FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_PERIOD = re.compile(r"(\d{4})-(\d{2})")
_COPY_BLOCK = 1 << 20

# The exported columns, in file order, with their Parquet types.
COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("ledger_id", pa.string()),
    ("event_id", pa.string()),
    ("tenant_id", pa.string()),
    ("principal_id", pa.string()),
    ("operation", pa.string()),
    ("message_type", pa.string()),
    ("handler", pa.string()),
    ("units", pa.decimal128(18, 6)),
    ("base_rate", pa.decimal128(18, 6)),
    ("multiplier", pa.decimal128(18, 6)),
    ("total_dcu", pa.decimal128(18, 6)),
    ("unit_price", pa.decimal128(18, 6)),
    ("total_cost", pa.decimal128(18, 6)),
    ("currency", pa.string()),
    ("rate_plan_id", pa.string()),
    ("metadata", pa.string()),
    ("recorded_at", pa.string()),
    ("billing_period", pa.string()),
    # YYYY-MM on an adjustment line (a late event for that closed period), empty otherwise.
    ("adjusts_period", pa.string()),
)
_MONEY_TOTALS = ("units", "total_dcu", "total_cost")
# Parquet columns whose values repeat from row to row: dictionary-encoded. The others (ids,
# money, metadata, times) are nearly all distinct: building a dictionary of them only to drop
# it took about 40 % of writing the file (100,000 rows).
_REPEATING = (
    "tenant_id",
    "principal_id",
    "operation",
    "message_type",
    "handler",
    "currency",
    "rate_plan_id",
    "billing_period",
    "adjusts_period",
)

# -- SQL ----------------------------------------------------------------------------------------

# The period's rows in file order. Times are UTC text with microseconds, so the text does not
# depend on the session's time zone; metadata is json, printed as stored (migration 0032). The
# order names the table's columns, not the output's text `recorded_at`, so that the index on
# (billing_period, tenant_id, recorded_at, event_id) delivers the rows already in order.
_ROWS = """
SELECT ledger_id, event_id, tenant_id, principal_id, operation, message_type, handler,
       units, base_rate, multiplier, total_dcu, unit_price, total_cost, {currency} AS currency,
       rate_plan_id, metadata,
       to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS recorded_at,
       {label} AS billing_period,
       to_char(adjusts_period, 'YYYY-MM') AS adjusts_period
FROM billing_usage_ledger
WHERE billing_period = {period} AND ({tenant}::text IS NULL OR tenant_id = {tenant}){range}
ORDER BY billing_usage_ledger.tenant_id, billing_usage_ledger.recorded_at,
         billing_usage_ledger.event_id
"""

# The same rows' totals per operation, from the same snapshot.
_TOTALS = """
SELECT operation, count(*), sum(units), sum(total_dcu), sum(total_cost)
FROM billing_usage_ledger
WHERE billing_period = %(period)s AND (%(tenant)s::text IS NULL OR tenant_id = %(tenant)s)
GROUP BY operation ORDER BY operation
"""


class InvalidPeriodError(UsageError):
    """A billing period that is not ``YYYY-MM``, or lies in the future."""

    code = "invalid-period"


class ExportDirectoryNotEmptyError(ConflictError):
    """The export's directory already holds something: an export never mixes with other files."""

    code = "export-directory-not-empty"


class ExportFormat(StrEnum):
    CSV = "csv"
    PARQUET = "parquet"


def parse_period(text: str, *, today: date | None = None) -> date:
    """The first day of the month ``text`` (``YYYY-MM``) names.

    Raises ``InvalidPeriodError`` for another shape, a month outside 01-12 or a month after
    the current one (UTC)."""
    match = _PERIOD.fullmatch(text.strip())
    if match is None or not 1 <= int(match[2]) <= 12 or int(match[1]) < 1:
        raise InvalidPeriodError(f"period {text!r} is not a month written YYYY-MM (e.g. 2026-11)")
    period = date(int(match[1]), int(match[2]), 1)
    current = (today or datetime.now(UTC).date()).replace(day=1)
    if period > current:
        raise InvalidPeriodError(
            f"period {text!r} is in the future (the current period is {period_label(current)})"
        )
    return period


@dataclass(frozen=True)
class OperationTotal:
    """The rows of one operation and currency, and their sums (exact)."""

    operation: str
    currency: str
    rows: int
    units: Decimal
    total_dcu: Decimal
    total_cost: Decimal

    def as_json(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "currency": self.currency,
            "rows": self.rows,
            **{name: _decimal_text(getattr(self, name)) for name in _MONEY_TOTALS},
        }


@dataclass(frozen=True)
class ExportedFile:
    name: str
    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class ExportManifest:
    """What an export holds (``manifest.json``)."""

    period: str
    tenant_id: str | None
    export_format: ExportFormat
    row_count: int
    totals: tuple[OperationTotal, ...]
    files: tuple[ExportedFile, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "format_version": EXPORT_FORMAT_VERSION,
            "period": self.period,
            "tenant_id": self.tenant_id,
            "format": self.export_format.value,
            "row_count": self.row_count,
            "totals": [total.as_json() for total in self.totals],
            "files": [
                {"name": f.name, "size_bytes": f.size_bytes, "sha256": f.sha256} for f in self.files
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ExportManifest:
        """Raises ``KeyError``/``ValueError``/``TypeError`` for a manifest of another shape."""
        if data["format_version"] != EXPORT_FORMAT_VERSION:
            raise ValueError(f"format_version {data['format_version']!r} is not supported")
        return cls(
            period=str(data["period"]),
            tenant_id=data["tenant_id"],
            export_format=ExportFormat(data["format"]),
            row_count=int(data["row_count"]),
            totals=tuple(
                OperationTotal(
                    operation=str(t["operation"]),
                    currency=str(t["currency"]),
                    rows=int(t["rows"]),
                    **{name: Decimal(str(t[name])) for name in _MONEY_TOTALS},
                )
                for t in data["totals"]
            ),
            files=tuple(
                ExportedFile(str(f["name"]), int(f["size_bytes"]), str(f["sha256"]))
                for f in data["files"]
            ),
        )


def export_period(
    connection: Connection,
    period: date,
    directory: Path,
    *,
    export_format: ExportFormat,
    currency: str,
    tenant_id: str | None = None,
    helpers: Sequence[Connection] = (),
) -> ExportManifest:
    """Write ``period``'s ledger rows (every tenant's, or ``tenant_id``'s) to ``directory``.

    ``connection`` is a psycopg connection outside a transaction; ``helpers``, more such
    sessions, copy ranges of the rows alongside it (``write_period``). Raises
    ``ExportDirectoryNotEmptyError`` when ``directory`` exists and holds anything; on any
    failure nothing is left at ``directory`` (an empty one given stays empty).
    """
    directory = directory.absolute()
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ExportDirectoryNotEmptyError(f"export directory {directory} is not empty")
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with connection.transaction():
            manifest = write_period(
                connection,
                period,
                staging,
                export_format=export_format,
                currency=currency,
                tenant_id=tenant_id,
                helpers=helpers,
            )
        if directory.exists():
            directory.rmdir()  # empty, checked above
        os.replace(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def write_period(
    connection: Connection,
    period: date,
    folder: Path,
    *,
    export_format: ExportFormat,
    currency: str,
    tenant_id: str | None,
    helpers: Sequence[Connection] = (),
) -> ExportManifest:
    """Write ``period``'s rows and manifest into the existing, empty ``folder``.

    Runs in the caller's transaction, which must be REPEATABLE READ (or stricter) so that the
    rows and the totals come from one snapshot. ``helpers`` (autocommit sessions outside a
    transaction, of the same database and role) copy ranges of the rows alongside, on the
    same snapshot (``billing.export_streams``); the bytes do not depend on how many."""
    label = f"{period_label(period)}"
    csv_path = folder / f"ledger-{label}.csv"
    parameters = {"period": period, "tenant": tenant_id}
    ranges = key_ranges(connection, period, tenant_id, 1 + len(helpers))
    copies = [
        sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv, HEADER {})").format(
            sql.SQL(_ROWS).format(
                currency=sql.Literal(currency),
                label=sql.Literal(label),
                period=sql.Literal(period),
                tenant=sql.Literal(tenant_id),
                range=range_condition(lower, upper),
            ),
            sql.SQL("true" if index == 0 else "false"),
        )
        for index, (lower, upper) in enumerate(ranges)
    ]
    if export_format is ExportFormat.PARQUET:
        data_path = folder / f"ledger-{label}.parquet"
        _copy_to_parquet(connection, helpers, copies, csv_path, data_path)
        described = _described(data_path)
    else:
        copied = copy_in_ranges(connection, helpers, copies, csv_path)
        described = ExportedFile(csv_path.name, copied.size_bytes, copied.sha256)
    totals = tuple(
        OperationTotal(str(op), currency, int(count), units, dcu, cost)
        for op, count, units, dcu, cost in connection.execute(_TOTALS, parameters)
    )
    manifest = ExportManifest(
        period=label,
        tenant_id=tenant_id,
        export_format=export_format,
        row_count=sum(total.rows for total in totals),
        totals=totals,
        files=(described,),
    )
    (folder / MANIFEST).write_text(_canonical_json(manifest.as_json()))
    return manifest


def _copy_to_parquet(
    connection: Connection,
    helpers: Sequence[Connection],
    copies: Sequence[sql.Composed],
    csv_path: Path,
    target: Path,
) -> None:
    """Write the COPY's CSV (``copy_in_ranges``) through a pipe into the Parquet encoder, which
    runs in a thread of its own while the rows are copied: no CSV file is written and read
    back, and pyarrow parses and encodes (releasing the GIL) beside the reading of the rows.

    Either side's failure ends the other: the encoder sees the end of the pipe when the copy
    stops, the copy a broken pipe when the encoder stops, and the encoder's error is raised then."""
    readable, writable = os.pipe()
    with ThreadPoolExecutor(max_workers=1) as pool, open(readable, "rb") as source:
        encoding = pool.submit(_csv_to_parquet, pa.PythonFile(source, mode="r"), target)
        try:
            with open(writable, "wb") as sink:
                copy_in_ranges(connection, helpers, copies, csv_path, sink)
        except BrokenPipeError:
            encoding.result()  # the encoder stopped reading: its error is the cause
            raise
        encoding.result()


def _csv_to_parquet(source: pa.NativeFile, target: Path) -> None:
    """Encode the exported CSV read from ``source`` as Parquet, streaming (memory holds one
    block of rows)."""
    schema = pa.schema(COLUMNS)
    reader = pa_csv.open_csv(
        source,
        read_options=pa_csv.ReadOptions(block_size=_COPY_BLOCK * 8),
        convert_options=pa_csv.ConvertOptions(
            column_types=dict(COLUMNS), strings_can_be_null=True, quoted_strings_can_be_null=False
        ),
    )
    with pq.ParquetWriter(
        target, schema, compression="zstd", use_dictionary=list(_REPEATING)
    ) as writer:
        for batch in reader:
            writer.write_table(pa.Table.from_batches([batch]).cast(schema))


@dataclass(frozen=True)
class ExportVerification:
    """The outcome of ``verify_export``: ``problems`` empty means the export is intact."""

    manifest: ExportManifest | None
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_export(directory: Path) -> ExportVerification:
    """Check a delivered export: every file listed with its size and SHA-256, nothing else
    there, and the rows themselves re-counted and re-summed against the manifest."""
    try:
        manifest = ExportManifest.from_json(json.loads((directory / MANIFEST).read_text()))
    except FileNotFoundError:
        return ExportVerification(None, (f"no {MANIFEST} in {directory}",))
    except (KeyError, ValueError, TypeError) as exc:
        return ExportVerification(None, (f"{MANIFEST} is not an export manifest: {exc}",))
    problems: list[str] = []
    listed = {file.name for file in manifest.files} | {MANIFEST}
    problems += [
        f"unexpected file {path.name}"
        for path in sorted(directory.iterdir())
        if path.name not in listed
    ]
    for file in manifest.files:
        path = directory / file.name
        if not path.is_file():
            problems.append(f"{file.name} is missing")
            continue
        found = _described(path)
        if found.size_bytes != file.size_bytes:
            problems.append(
                f"{file.name}: {found.size_bytes} bytes, manifest says {file.size_bytes}"
            )
        if found.sha256 != file.sha256:
            problems.append(f"{file.name}: SHA-256 {found.sha256}, manifest says {file.sha256}")
            continue
        problems += _check_rows(path, manifest)
    return ExportVerification(manifest, tuple(problems))


def _check_rows(path: Path, manifest: ExportManifest) -> list[str]:
    found = dict(_totals_of(path, manifest.export_format))
    expected = {(t.operation, t.currency): t for t in manifest.totals}
    problems = []
    count = sum(total.rows for total in found.values())
    if count != manifest.row_count:
        problems.append(f"{path.name}: {count} rows, manifest says {manifest.row_count}")
    for key in sorted(expected.keys() | found.keys()):
        if found.get(key) != expected.get(key):
            problems.append(
                f"{path.name}: totals of {key[0]} ({key[1]}) are {_summary(found.get(key))}, "
                f"manifest says {_summary(expected.get(key))}"
            )
    return problems


def _totals_of(
    path: Path, export_format: ExportFormat
) -> Iterator[tuple[tuple[str, str], OperationTotal]]:
    sums: dict[tuple[str, str], list[Any]] = {}
    if export_format is ExportFormat.CSV:
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                key = (row["operation"], row["currency"])
                entry = sums.setdefault(key, [0, Decimal(0), Decimal(0), Decimal(0)])
                entry[0] += 1
                for index, name in enumerate(_MONEY_TOTALS, start=1):
                    entry[index] += Decimal(row[name])
    else:
        table = pq.read_table(path, columns=["operation", "currency", *_MONEY_TOTALS])
        grouped = table.group_by(["operation", "currency"]).aggregate(
            [("operation", "count"), *((name, "sum") for name in _MONEY_TOTALS)]
        )
        for row in grouped.to_pylist():
            sums[(row["operation"], row["currency"])] = [
                row["operation_count"],
                *(Decimal(row[f"{name}_sum"]) for name in _MONEY_TOTALS),
            ]
    for (operation, currency), (rows, units, dcu, cost) in sums.items():
        yield (operation, currency), OperationTotal(operation, currency, rows, units, dcu, cost)


def _summary(total: OperationTotal | None) -> str:
    if total is None:
        return "absent"
    return (
        f"{total.rows} rows, units {_decimal_text(total.units)}, DCU "
        f"{_decimal_text(total.total_dcu)}, cost {_decimal_text(total.total_cost)}"
    )


def _described(path: Path) -> ExportedFile:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_COPY_BLOCK):
            digest.update(block)
    return ExportedFile(path.name, path.stat().st_size, digest.hexdigest())


def _decimal_text(value: Decimal) -> str:
    """Fixed six decimals, as NUMERIC(18,6) prints: the same sum always reads the same."""
    return str(value.quantize(Decimal("0.000001")))


def _canonical_json(data: Mapping[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
