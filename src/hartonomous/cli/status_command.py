"""`hartonomous status`: one screen of OK / WARN / FAIL checks (docs/operations.md, "status")."""

from __future__ import annotations

from dataclasses import asdict

import typer

from hartonomous.cli.context import cli_context, shown
from hartonomous.errors import OperationFailedError


class StatusFailedError(OperationFailedError):
    """At least one check is FAIL (exit 1 after the screen is printed)."""

    code = "status-failed"


def status(ctx: typer.Context) -> None:
    """Services and heartbeats, lags, backlog, dead letters, ledger, last backup, disk use;
    exits 1 when any check is FAIL."""
    from hartonomous.services.status import status_report

    state = cli_context(ctx)
    report = status_report(state.settings())
    width = max(len(check.name) for check in report.checks)
    lines = [
        f"{check.verdict:4} {check.name:{width}}  {shown(check.detail)}" for check in report.checks
    ]
    state.emit(
        {"verdict": report.verdict, "checks": [asdict(check) for check in report.checks]},
        "\n".join([*lines, f"overall {report.verdict}"]),
    )
    if report.verdict == "FAIL":
        failed = [check.name for check in report.checks if check.verdict == "FAIL"]
        raise StatusFailedError(f"status FAIL: {', '.join(failed)}")
