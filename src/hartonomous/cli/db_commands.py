"""`hartonomous db …`: migrations and reference data."""

from __future__ import annotations

import signal
import subprocess
from dataclasses import asdict
from typing import Annotated

import structlog
import typer

from hartonomous.cli.context import cli_context
from hartonomous.errors import OperationFailedError
from hartonomous.services import open_platform
from hartonomous.services.database import (
    database_revision,
    database_status,
    downgrade_database,
    seed_database,
    upgrade_database,
)

log = structlog.get_logger(__name__)
app = typer.Typer(help="Migrations and reference data.", no_args_is_help=True)


class SeedSamplesFailedError(OperationFailedError):
    pass


@app.command("upgrade")
def upgrade_command(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision")] = "head",
) -> None:
    """Apply migrations up to REVISION (default head). Idempotent. With the embedded server,
    creates the cluster in a data dir that has none (as `up` does)."""
    state = cli_context(ctx)
    with open_platform(
        state.settings(), require_current_schema=False, embedded_start="initialise"
    ) as platform:
        change = upgrade_database(platform, revision)
    before, after = change.before, change.after
    log.info("migrations_upgraded", from_revision=before, to_revision=after)
    state.emit(
        {"from": before, "to": after, "changed": change.changed},
        f"database at {after} (was {before or 'empty'})"
        if change.changed
        else f"already at {after}",
    )


@app.command("downgrade")
def downgrade_command(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision, e.g. -1 or base")],
) -> None:
    """Revert migrations down to REVISION."""
    state = cli_context(ctx)
    with open_platform(state.settings(), require_current_schema=False) as platform:
        change = downgrade_database(platform, revision)
    state.emit(
        {"from": change.before, "to": change.after, "changed": change.changed},
        f"database at {change.after or 'base'} (was {change.before or 'base'})",
    )


@app.command("current")
def current_command(ctx: typer.Context) -> None:
    """Print the database's migration revision."""
    state = cli_context(ctx)
    with open_platform(state.settings(), require_current_schema=False) as platform:
        revision = database_revision(platform)
    state.emit({"revision": revision}, revision or "(no revision)")


@app.command("status")
def status_command(ctx: typer.Context) -> None:
    """Where the database is, what it runs and whether migrations are at head."""
    state = cli_context(ctx)
    with open_platform(state.settings(), require_current_schema=False) as platform:
        data = asdict(database_status(platform))
    human = "\n".join(f"{key:19} {value}" for key, value in data.items())
    state.emit(data, human)


@app.command("seed")
def seed_command(
    ctx: typer.Context,
    update_plan: Annotated[
        bool, typer.Option("--update-plan", help="Overwrite the default plan with settings")
    ] = False,
    samples: Annotated[
        bool,
        typer.Option("--samples", help="Also ingest sample documents and the MiniLM model"),
    ] = False,
) -> None:
    """Seed the default rate plan and a sample tenant and principal. Idempotent."""
    state = cli_context(ctx)
    with open_platform(state.settings()) as platform:
        report, job = seed_database(platform, update_plan=update_plan, samples=samples)
    lines = [
        f"rate plan {report.plan.plan_code}: {report.plan.status.value}",
        f"sample tenant: {'created' if report.sample_tenant_created else 'unchanged'}",
        f"sample principal: {'created' if report.sample_principal_created else 'unchanged'}",
    ]
    if report.plan.status.value == "differs":
        lines.append("  the stored plan differs from settings; --update-plan applies settings")
    if report.sample_api_key:
        lines.append(
            f"sample API key (shown once, only its hash is stored): {report.sample_api_key}"
        )
    data = report.as_dict()
    if job is not None:
        data["samples"] = job.as_dict()
        lines += [f"sample {f.status:9} {f.path}" for f in job.files]
        if job.status != "completed":
            reasons = "; ".join(f.error for f in job.files if f.error)
            raise SeedSamplesFailedError(f"sample ingestion {job.status}: {reasons}")
    state.emit(data, "\n".join(lines))


@app.command("shell", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def shell_command(ctx: typer.Context) -> None:
    """psql on the database (the embedded server keeps running while the shell is open);
    arguments after `--` go to psql, e.g. `db shell -- -c "SELECT 1"`. Exits with psql's code."""
    from hartonomous.services.shell import shell_command as psql_command

    state = cli_context(ctx)
    with open_platform(state.settings(), require_current_schema=False) as platform:
        command = psql_command(platform, list(ctx.args))
        # psql owns the terminal; Ctrl-C belongs to it (it cancels a query), not to us.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            code = subprocess.run(command.argv, env=command.env, check=False).returncode
        finally:
            signal.signal(signal.SIGINT, previous)
    raise typer.Exit(code)
