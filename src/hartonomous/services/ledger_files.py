"""Ledger files for finance: exports of a billing period with a manifest, the check of a
delivered export, and archives of closed periods moved out of the ledger and restored
(docs/billing.md, "Export" and "Archive"). Runs on the maintenance engine: exports and
archives may cover every tenant."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from hartonomous.billing.archive import (
    ArchivedPeriod,
    RestoredPeriod,
    archive_periods,
    restore_archive,
)
from hartonomous.billing.export import (
    ExportFormat,
    ExportManifest,
    ExportVerification,
    export_period,
    parse_period,
    verify_export,
)
from hartonomous.billing.export_streams import stream_count
from hartonomous.security.tenants import get_tenant
from hartonomous.services.database_errors import database_errors
from hartonomous.services.platform import Platform
from hartonomous.services.sessions import driver_session

__all__ = [
    "ArchivedPeriod",
    "ExportFormat",
    "RestoredPeriod",
    "archive_ledger",
    "check_export",
    "export_ledger",
    "parse_period",
    "restore_ledger_archive",
]


def export_ledger(
    platform: Platform,
    period: str,
    directory: Path,
    *,
    export_format: ExportFormat = ExportFormat.CSV,
    tenant_id: str | None = None,
) -> ExportManifest:
    """Export ``period`` (``YYYY-MM``), every tenant's rows or ``tenant_id``'s, to ``directory``.

    Raises ``InvalidPeriodError`` (a malformed or future period), ``UnknownTenantError``,
    ``ExportDirectoryNotEmptyError``; nothing is written when any is raised.
    """
    month = parse_period(period)
    if tenant_id is not None:
        with database_errors(), platform.maintenance_engine.connect() as connection:
            get_tenant(connection, tenant_id)
    with driver_session(platform) as session, _helper_sessions(platform) as helpers:
        return export_period(
            session,
            month,
            directory,
            export_format=export_format,
            currency=platform.settings.billing.currency,
            tenant_id=tenant_id,
            helpers=helpers,
        )


@contextmanager
def _helper_sessions(platform: Platform) -> Iterator[list[psycopg.Connection[Any]]]:
    """Sessions that copy ranges of an export's rows alongside the main one
    (``billing.export_streams.stream_count()`` in all: one per core, at most 4)."""
    with ExitStack() as stack:
        yield [stack.enter_context(driver_session(platform)) for _ in range(stream_count() - 1)]


def check_export(directory: Path) -> ExportVerification:
    """Check the export in ``directory`` against its manifest (no database needed)."""
    return verify_export(directory)


def archive_ledger(platform: Platform, before: str, directory: Path) -> list[ArchivedPeriod]:
    """Move every billing period before ``before`` (``YYYY-MM``, at most the current period)
    out of the ledger into verified Parquet archives under ``directory/<YYYY-MM>/``.

    Raises ``InvalidPeriodError``, ``ExportDirectoryNotEmptyError`` (a period's folder is not
    empty: nothing archived), ``ArchiveBusyError`` (another archive or restore runs)."""
    cut_off = parse_period(before)
    with driver_session(platform) as session, _helper_sessions(platform) as helpers:
        return archive_periods(
            session,
            cut_off,
            directory,
            currency=platform.settings.billing.currency,
            current=datetime.now(UTC).date(),
            helpers=helpers,
        )


def restore_ledger_archive(platform: Platform, directory: Path) -> list[RestoredPeriod]:
    """Put the rows of the archive in ``directory`` (a period's folder or a folder of them)
    back into the ledger exactly. Raises ``ArchiveNotFoundError``, ``ArchiveMismatchError``,
    ``ArchiveBusyError``."""
    with driver_session(platform) as session:
        return restore_archive(session, directory)
