"""Ledger exports for finance: write a billing period's rows with a manifest, and check a
delivered export (docs/billing.md, "Export"). Runs on the maintenance engine: an export may
cover every tenant."""

from __future__ import annotations

from pathlib import Path

from hartonomous.billing.export import (
    ExportFormat,
    ExportManifest,
    ExportVerification,
    export_period,
    parse_period,
    verify_export,
)
from hartonomous.security.tenants import get_tenant
from hartonomous.services.database_errors import database_errors
from hartonomous.services.platform import Platform
from hartonomous.services.sessions import driver_session

__all__ = ["ExportFormat", "check_export", "export_ledger"]


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
    with driver_session(platform) as session:
        return export_period(
            session,
            month,
            directory,
            export_format=export_format,
            currency=platform.settings.billing.currency,
            tenant_id=tenant_id,
        )


def check_export(directory: Path) -> ExportVerification:
    """Check the export in ``directory`` against its manifest (no database needed)."""
    return verify_export(directory)
