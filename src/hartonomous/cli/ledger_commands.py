"""`hartonomous ledger report / close / export / verify / archive / restore-archive /
prune-receipts`: what was billed, closing billing periods, periods for finance systems and
cold storage (docs/billing.md)."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Annotated

import typer

from hartonomous.cli.context import cli_context
from hartonomous.errors import UsageError
from hartonomous.services import open_platform
from hartonomous.services.ledger import ReportGrouping, ledger_report
from hartonomous.services.ledger_close import close_ledger_period
from hartonomous.services.ledger_files import (
    ExportFormat,
    archive_ledger,
    check_export,
    export_ledger,
    parse_period,
    restore_ledger_archive,
)
from hartonomous.services.usage_events import prune_usage_event_receipts

ledger_app = typer.Typer(
    help="The usage ledger: reports, exports for finance, archives.", no_args_is_help=True
)


@ledger_app.command("report")
def report(
    ctx: typer.Context,
    *,
    since: Annotated[str | None, typer.Option(help="First day, YYYY-MM-DD (UTC), included")] = None,
    until: Annotated[str | None, typer.Option(help="Last day, YYYY-MM-DD, excluded")] = None,
    period: Annotated[
        str | None, typer.Option(help="A whole month, YYYY-MM (instead of --since/--until)")
    ] = None,
    group_by: Annotated[
        list[ReportGrouping] | None,
        typer.Option("--group-by", help="tenant, principal, operation, day or month (repeat)"),
    ] = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's usage")] = None,
    csv_output: Annotated[bool, typer.Option("--csv", help="CSV instead of a table")] = False,
) -> None:
    """Billed totals (rows, units, DCU, cost) over a range of days, grouped; exact decimals."""
    state = cli_context(ctx)
    first, last = _report_range(since, until, period)
    with open_platform(state.settings(), read_only=True) as platform:
        usage = ledger_report(
            platform,
            since=first,
            until=last,
            group_by=tuple(group_by or ()),
            tenant_id=tenant,
            across_tenants=True,
        )
    if csv_output:
        typer.echo(usage.as_csv(), nl=False)
        return
    data = usage.as_json()
    names = [grouping.value for grouping in usage.group_by]
    lines = [
        "  ".join(
            [
                *(str(row[name]) for name in names),
                f"{row['rows']} rows",
                f"units {row['units']}",
                f"DCU {row['total_dcu']}",
                f"cost {row['total_cost']}",
            ]
        )
        for row in data["rows"]
    ]
    total = data["total"]
    lines.append(
        f"total  {total['rows']} rows  units {total['units']}  DCU {total['total_dcu']}  "
        f"cost {total['total_cost']}"
    )
    state.emit(data, "\n".join(lines))


def _report_range(since: str | None, until: str | None, period: str | None) -> tuple[date, date]:
    if period is not None:
        if since is not None or until is not None:
            raise UsageError("give --period, or --since and --until, not both")
        first = parse_period(period)
        return first, (first + timedelta(days=32)).replace(day=1)
    if since is None or until is None:
        raise UsageError("give --period YYYY-MM, or both --since and --until (YYYY-MM-DD)")
    return _day(since, "--since"), _day(until, "--until")


def _day(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{option} {text!r} is not a day written YYYY-MM-DD") from None


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
    with open_platform(state.settings(), read_only=True) as platform:
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


@ledger_app.command("close")
def close(
    ctx: typer.Context,
    period: Annotated[str, typer.Argument(help="The billing period to close, YYYY-MM")],
) -> None:
    """Freeze a finished period with the checksum of its totals (again: the same checksum).
    Refused while events of the period are still queued; later ones become adjustments."""
    state = cli_context(ctx)
    with open_platform(state.settings()) as platform:
        closed = close_ledger_period(platform, period)
    data = closed.as_json()
    verb = "closed" if closed.closed_now else "already closed"
    state.emit(
        data,
        f"{verb} {data['period']}: {closed.row_count} rows, cost {data['total_cost']}, "
        f"checksum {closed.checksum}",
    )


@ledger_app.command("prune-receipts")
def prune_receipts(ctx: typer.Context) -> None:
    r"""Forget usage-event receipts older than \[billing] usage_event_retention_days (>= 35)."""
    state = cli_context(ctx)
    with open_platform(state.settings()) as platform:
        forgotten = prune_usage_event_receipts(platform)
    state.emit({"forgotten": forgotten}, f"forgot {forgotten} usage-event receipt(s)")
