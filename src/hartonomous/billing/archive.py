"""Ledger archives: closed billing periods moved out of the hot table into verified Parquet
files, and brought back exactly (docs/billing.md, "Archive").

An archive of a period is an export of it (``billing/export.py``: Parquet, every tenant, the
same manifest) in ``<DIR>/<YYYY-MM>/``, plus a `billing_ledger_archives` row and the period's
totals per tenant and operation in `billing_ledger_archive_totals`.

**Never neither, never both.** The database row is what makes files an archive. For each
period, in one REPEATABLE READ transaction: the rows are written into a hidden staging folder
beside the target, the files are verified against their manifest, the archive row and totals
are inserted, the period's rows are deleted (exactly as many as were written, else nothing
happens) and the transaction commits; only then is the staging folder renamed to the target.
A process killed before the commit leaves the rows in the table and a staging folder that no
row names (removed by the next run); killed after it, the archive row names its staging
folder, which holds the verified files, and the next run renames it into place.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
import pyarrow.parquet as pq

from hartonomous.billing.export import (
    ExportDirectoryNotEmptyError,
    ExportFormat,
    ExportManifest,
    InvalidPeriodError,
    verify_export,
    write_period,
)
from hartonomous.billing.periods import period_label
from hartonomous.errors import ConflictError, NotFoundError, OperationFailedError

__all__ = [
    "ArchiveNotFoundError",
    "ArchivedPeriod",
    "RestoredPeriod",
    "archive_periods",
    "finish_interrupted_archives",
    "restore_archive",
]

Connection = psycopg.Connection[Any]

# The staging folder of a period's archive: `.<YYYY-MM>.<random>` beside its target.
_STAGING = re.compile(r"\.\d{4}-\d{2}\..+")

# -- SQL ----------------------------------------------------------------------------------------

# Periods with rows before the cut-off, oldest first.
_PERIODS_BEFORE = """
SELECT DISTINCT billing_period FROM billing_usage_ledger
WHERE billing_period < %(before)s ORDER BY billing_period
"""

_RECORD_ARCHIVE = """
INSERT INTO billing_ledger_archives
    (billing_period, path, staging_path, file_name, file_sha256, row_count)
VALUES (%(period)s, %(path)s, %(staging)s, %(file_name)s, %(sha256)s, %(rows)s)
RETURNING archive_id
"""

# The period's totals per tenant and operation, from the archiving transaction's snapshot.
_RECORD_TOTALS = """
INSERT INTO billing_ledger_archive_totals
    (archive_id, tenant_id, operation, billing_period, row_count, units, total_dcu, total_cost)
SELECT %(archive)s, tenant_id, operation, billing_period, count(*), sum(units), sum(total_dcu),
       sum(total_cost)
FROM billing_usage_ledger WHERE billing_period = %(period)s
GROUP BY tenant_id, operation, billing_period
"""

_DELETE_PERIOD = "DELETE FROM billing_usage_ledger WHERE billing_period = %(period)s"

# One archiving or restoring process at a time (a session lock: held across its transactions).
_TRY_LOCK = "SELECT pg_try_advisory_lock(hashtext('hartonomous.ledger_archive'))"
_UNLOCK = "SELECT pg_advisory_unlock(hashtext('hartonomous.ledger_archive'))"

# Archives whose rename into place did not happen (the process died after the commit).
_UNFINISHED = """
SELECT path, staging_path FROM billing_ledger_archives WHERE restored_at IS NULL
"""

_FIND_ARCHIVE = """
SELECT archive_id, file_sha256, row_count FROM billing_ledger_archives
WHERE billing_period = %(period)s AND restored_at IS NULL
FOR UPDATE
"""

_MARK_RESTORED = """
UPDATE billing_ledger_archives SET restored_at = now() WHERE archive_id = %(archive)s;
"""

_FORGET_TOTALS = "DELETE FROM billing_ledger_archive_totals WHERE archive_id = %(archive)s"

# The table's columns an archive file carries (its `currency` column is the export's own).
_RESTORED_COLUMNS = (
    "ledger_id",
    "event_id",
    "tenant_id",
    "principal_id",
    "operation",
    "message_type",
    "handler",
    "units",
    "base_rate",
    "multiplier",
    "total_dcu",
    "unit_price",
    "total_cost",
    "rate_plan_id",
    "metadata",
    "recorded_at",
    "billing_period",
    "adjusts_period",
)


class ArchiveNotFoundError(NotFoundError):
    """A directory that is not a recorded, unrestored archive of this database."""

    code = "archive-not-found"


class ArchiveMismatchError(ConflictError):
    """An archive's files do not match their manifest or their database record."""

    code = "archive-mismatch"


class ArchiveBusyError(ConflictError):
    """Another archiving or restoring process holds the archive lock."""

    code = "archive-busy"


class ArchiveFailedError(OperationFailedError):
    """The rows deleted were not the rows written: nothing was archived."""


@dataclass(frozen=True)
class ArchivedPeriod:
    period: str
    path: Path
    rows: int


@dataclass(frozen=True)
class RestoredPeriod:
    period: str
    rows: int


def archive_periods(
    connection: Connection,
    before: date,
    directory: Path,
    *,
    currency: str,
    current: date,
    helpers: Sequence[Connection] = (),
) -> list[ArchivedPeriod]:
    """Archive every period before ``before`` (a month's first day, not after ``current``'s
    month) into ``directory/<YYYY-MM>/``; the periods archived, oldest first.

    ``connection`` is a psycopg connection outside a transaction. Raises
    ``InvalidPeriodError`` for a cut-off after the current period, and
    ``ExportDirectoryNotEmptyError`` when a period's target folder holds anything.
    ``helpers``, more sessions outside a transaction, copy ranges of each period's rows
    alongside (``export.write_period``).
    """
    if before > current.replace(day=1):
        raise InvalidPeriodError(
            "cannot archive the current period or later "
            f"({period_label(before)} > {period_label(current)})"
        )
    directory = directory.absolute()
    if not connection.execute(_TRY_LOCK).fetchone()[0]:  # type: ignore[index]
        raise ArchiveBusyError("another `ledger archive` or restore is running")
    try:
        finish_interrupted_archives(connection)
        _remove_stale_staging(connection, directory)
        return _archive_before(connection, before, directory, currency, helpers)
    finally:
        connection.execute(_UNLOCK)


def _archive_before(
    connection: Connection,
    before: date,
    directory: Path,
    currency: str,
    helpers: Sequence[Connection],
) -> list[ArchivedPeriod]:
    periods = [row[0] for row in connection.execute(_PERIODS_BEFORE, {"before": before})]
    for period in periods:
        target = directory / f"{period_label(period)}"
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise ExportDirectoryNotEmptyError(f"archive directory {target} is not empty")
    return [_archive_one(connection, period, directory, currency, helpers) for period in periods]


def _archive_one(
    connection: Connection,
    period: date,
    directory: Path,
    currency: str,
    helpers: Sequence[Connection],
) -> ArchivedPeriod:
    target = directory / f"{period_label(period)}"
    directory.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=directory))
    try:
        connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with connection.transaction():
            manifest = write_period(
                connection,
                period,
                staging,
                export_format=ExportFormat.PARQUET,
                currency=currency,
                tenant_id=None,
                helpers=helpers,
            )
            verified = verify_export(staging)
            if not verified.ok:
                raise ArchiveFailedError(
                    f"the archive of {period_label(period)} failed its own check: "
                    + "; ".join(verified.problems)
                )
            (data,) = manifest.files
            archive = connection.execute(
                _RECORD_ARCHIVE,
                {
                    "period": period,
                    "path": str(target),
                    "staging": str(staging),
                    "file_name": data.name,
                    "sha256": data.sha256,
                    "rows": manifest.row_count,
                },
            ).fetchone()
            assert archive is not None
            connection.execute(_RECORD_TOTALS, {"archive": archive[0], "period": period})
            deleted = connection.execute(_DELETE_PERIOD, {"period": period}).rowcount
            if deleted != manifest.row_count:
                raise ArchiveFailedError(
                    f"{period_label(period)}: {deleted} rows would be deleted but "
                    f"{manifest.row_count} were archived; nothing was changed"
                )
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        connection.isolation_level = None
    _move_into_place(staging, target)
    return ArchivedPeriod(f"{period_label(period)}", target, manifest.row_count)


def finish_interrupted_archives(connection: Connection) -> int:
    """Rename into place the archives a killed process committed but never moved; the count."""
    finished = 0
    for path, staging in connection.execute(_UNFINISHED).fetchall():
        target, staged = Path(path), Path(staging)
        if not target.exists() and staged.is_dir():
            _move_into_place(staged, target)
            finished += 1
    return finished


def _remove_stale_staging(connection: Connection, directory: Path) -> None:
    """Remove staging folders in ``directory`` that no archive row names: left by a process
    killed before its commit (their rows are still in the table)."""
    if not directory.is_dir():
        return
    named = {Path(row[1]).name for row in connection.execute(_UNFINISHED).fetchall()}
    for entry in directory.iterdir():
        if entry.is_dir() and _STAGING.fullmatch(entry.name) and entry.name not in named:
            shutil.rmtree(entry, ignore_errors=True)


def _move_into_place(staging: Path, target: Path) -> None:
    if target.exists():
        target.rmdir()  # empty: checked before archiving
    os.replace(staging, target)


def restore_archive(connection: Connection, directory: Path) -> list[RestoredPeriod]:
    """Bring back the rows of the archive in ``directory`` (one period's folder, or a folder of
    them), exactly as they were; each period in one transaction.

    Raises ``ArchiveMismatchError`` when files differ from their manifest or record, and
    ``ArchiveNotFoundError`` for a folder that is not a recorded, unrestored archive.
    """
    directory = directory.absolute()
    folders = (
        [directory]
        if (directory / "manifest.json").exists()
        else sorted(path for path in directory.iterdir() if (path / "manifest.json").exists())
        if directory.is_dir()
        else []
    )
    if not folders:
        raise ArchiveNotFoundError(f"no archive in {directory} (no manifest.json)")
    if not connection.execute(_TRY_LOCK).fetchone()[0]:  # type: ignore[index]
        raise ArchiveBusyError("another `ledger archive` or restore is running")
    try:
        finish_interrupted_archives(connection)
        # Every folder checked before any is restored: a damaged one restores nothing.
        for folder in folders:
            _verified(folder)
        return [_restore_one(connection, folder) for folder in folders]
    finally:
        connection.execute(_UNLOCK)


def _verified(folder: Path) -> ExportManifest:
    verified = verify_export(folder)
    if not verified.ok or verified.manifest is None:
        raise ArchiveMismatchError(f"{folder}: " + "; ".join(verified.problems))
    return verified.manifest


def _restore_one(connection: Connection, folder: Path) -> RestoredPeriod:
    manifest = _verified(folder)
    (data,) = manifest.files
    period = date.fromisoformat(f"{manifest.period}-01")
    with connection.transaction():
        record = connection.execute(_FIND_ARCHIVE, {"period": period}).fetchone()
        if record is None:
            raise ArchiveNotFoundError(
                f"{folder} is not a recorded archive of this database that is still archived "
                f"(period {manifest.period})"
            )
        archive_id, sha256, rows = record
        if sha256 != data.sha256 or rows != manifest.row_count:
            raise ArchiveMismatchError(
                f"{folder}: {data.name} is not the file archived for {manifest.period} "
                f"(recorded SHA-256 {sha256}, {rows} rows)"
            )
        # The rollup still counts these rows (an archive moves rows, usage stays): its trigger
        # must not count them again (migration 0026).
        connection.execute("SELECT set_config('hartonomous.ledger_restore', 'on', true)")
        columns = _archived_columns(folder / data.name)
        copy = "COPY billing_usage_ledger ({}) FROM STDIN".format(", ".join(columns))
        with connection.cursor().copy(copy) as stream:
            for row in _archived_rows(folder / data.name, columns):
                stream.write_row(row)
        connection.execute(_MARK_RESTORED, {"archive": archive_id})
        connection.execute(_FORGET_TOTALS, {"archive": archive_id})
    return RestoredPeriod(manifest.period, manifest.row_count)


def _archived_columns(path: Path) -> tuple[str, ...]:
    """``_RESTORED_COLUMNS`` that the file holds (archives made before migration 0029 have no
    ``adjusts_period``: their rows get NULL, which they were)."""
    present = set(pq.ParquetFile(path).schema_arrow.names)
    return tuple(name for name in _RESTORED_COLUMNS if name in present)


def _archived_rows(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[Any, ...]]:
    """The Parquet file's rows in ``columns`` order: money as the exact ``Decimal`` it was
    written as (scale 6), NULL as None, periods (YYYY-MM) as their month's first day."""
    parquet = pq.ParquetFile(path)
    periods = [at for at, name in enumerate(columns) if name.endswith("_period")]
    for batch in parquet.iter_batches(columns=list(columns)):
        for row in zip(*(column.to_pylist() for column in batch.columns), strict=True):
            values = list(row)
            for at in periods:
                if values[at]:
                    values[at] = f"{values[at]}-01"
                else:
                    values[at] = None
            yield tuple(values)
