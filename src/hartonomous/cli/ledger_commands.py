"""`hartonomous ledger export / verify / archive / restore-archive`: billing periods for finance
systems and cold storage (docs/billing.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hartonomous.cli.context import cli_context
from hartonomous.services import open_platform
from hartonomous.services.ledger_files import (
    ExportFormat,
    archive_ledger,
    check_export,
    export_ledger,
    restore_ledger_archive,
)

ledger_app = typer.Typer(
    help="The usage ledger: exports for finance, archives.", no_args_is_help=True
)


@ledger_app.command("export")
def export(
    ctx: typer.Context,
    period: Annotated[str, typer.Option(help="The billing period, YYYY-MM")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="A new or empty directory for the export")
    ],
    export_format: Annotated[
        ExportFormat, typer.Option("--format", help="csv or parquet")
    ] = ExportFormat.CSV,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's rows")] = None,
) -> None:
    """Write a period's ledger rows and a manifest (row count, totals, SHA-256 of each file)."""
    state = cli_context(ctx)
    with open_platform(state.settings()) as platform:
        manifest = export_ledger(
            platform, period, output, export_format=export_format, tenant_id=tenant
        )
    data = manifest.as_json()
    human = "\n".join(
        [
            f"exported {manifest.row_count} rows of {manifest.period} to {output}",
            *(
                f"  {t.operation:40} {t.rows:>9} rows  {t.total_cost} {t.currency}"
                for t in manifest.totals
            ),
        ]
    )
    state.emit(data, human)


@ledger_app.command("verify")
def verify(
    ctx: typer.Context,
    directory: Annotated[Path, typer.Argument(help="A delivered export's directory")],
) -> None:
    """Check an export against its manifest: files, sizes, SHA-256, row count and totals.
    Exit 1 when anything differs."""
    state = cli_context(ctx)
    outcome = check_export(directory)
    data = {
        "ok": outcome.ok,
        "problems": list(outcome.problems),
        "period": outcome.manifest.period if outcome.manifest else None,
        "row_count": outcome.manifest.row_count if outcome.manifest else None,
    }
    human = (
        f"export of {data['period']} intact: {data['row_count']} rows"
        if outcome.ok
        else "\n".join(["export does NOT match its manifest:", *outcome.problems])
    )
    state.emit(data, human)
    if not outcome.ok:
        raise typer.Exit(1)


@ledger_app.command("archive")
def archive(
    ctx: typer.Context,
    before: Annotated[str, typer.Option(help="Archive every period before this one, YYYY-MM")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Archives go to DIR/<YYYY-MM>/ (Parquet)")
    ],
) -> None:
    """Move closed periods out of the ledger into verified Parquet archives."""
    state = cli_context(ctx)
    with open_platform(state.settings()) as platform:
        archived = archive_ledger(platform, before, output)
    data = [{"period": a.period, "path": str(a.path), "rows": a.rows} for a in archived]
    human = "\n".join(f"archived {a.period}: {a.rows} rows in {a.path}" for a in archived)
    state.emit(data, human or f"nothing to archive before {before}")


@ledger_app.command("restore-archive")
def restore(
    ctx: typer.Context,
    directory: Annotated[Path, typer.Argument(help="An archive's folder, or a folder of them")],
) -> None:
    """Put archived rows back into the ledger, exactly as they were."""
    state = cli_context(ctx)
    with open_platform(state.settings()) as platform:
        restored = restore_ledger_archive(platform, directory)
    data = [{"period": r.period, "rows": r.rows} for r in restored]
    state.emit(data, "\n".join(f"restored {r.period}: {r.rows} rows" for r in restored))
