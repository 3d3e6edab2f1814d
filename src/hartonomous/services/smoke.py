"""The schema smoke test as a service (the checks are `ops.smoke`'s, docs/operations.md)."""

from __future__ import annotations

from hartonomous.ops.smoke import SmokeReport, run_smoke
from hartonomous.services.database_errors import database_errors
from hartonomous.services.platform import Platform

__all__ = ["SmokeReport", "smoke_report"]


def smoke_report(platform: Platform) -> SmokeReport:
    """Every smoke check's verdict; driver errors become ``HartonomousError`` kinds."""
    with database_errors():
        return run_smoke(platform.maintenance_engine, platform.settings.cdc)
