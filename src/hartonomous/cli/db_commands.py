"""`hartonomous db …`: migrations and reference data."""

from __future__ import annotations

from typing import Annotated

import structlog
import typer

from hartonomous.cli.context import cli_context
from hartonomous.cli.errors import CommandUsageError
from hartonomous.db import current_revision, downgrade, head_revision, open_database, upgrade
from hartonomous.db.migrate import known_revision
from hartonomous.errors import OperationFailedError
from hartonomous.ops.provision import provision
from hartonomous.ops.sample_content import ingest_samples
from hartonomous.ops.seed import seed

log = structlog.get_logger(__name__)
app = typer.Typer(help="Migrations and reference data.", no_args_is_help=True)


class UnknownRevisionError(CommandUsageError):
    pass


class SeedSamplesFailedError(OperationFailedError):
    pass


def _require_known(revision: str) -> None:
    if not known_revision(revision):
        raise UnknownRevisionError(f"unknown migration revision {revision!r}")


@app.command("upgrade")
def upgrade_command(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision")] = "head",
) -> None:
    """Apply migrations up to REVISION (default head). Idempotent."""
    state = cli_context(ctx)
    _require_known(revision)
    with open_database(state.settings(), require_current_schema=False) as database:
        before = current_revision(database.engine)
        if revision == "head":
            provision(database, state.settings())
        else:
            upgrade(database.engine, revision)
        after = current_revision(database.engine)
    log.info("migrations_upgraded", from_revision=before, to_revision=after)
    state.emit(
        {"from": before, "to": after, "changed": before != after},
        f"database at {after} (was {before or 'empty'})"
        if before != after
        else f"already at {after}",
    )


@app.command("downgrade")
def downgrade_command(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision, e.g. -1 or base")],
) -> None:
    """Revert migrations down to REVISION."""
    state = cli_context(ctx)
    _require_known(revision)
    with open_database(state.settings(), require_current_schema=False) as database:
        before = current_revision(database.engine)
        downgrade(database.engine, revision)
        after = current_revision(database.engine)
    state.emit(
        {"from": before, "to": after, "changed": before != after},
        f"database at {after or 'base'} (was {before or 'base'})",
    )


@app.command("current")
def current_command(ctx: typer.Context) -> None:
    """Print the database's migration revision."""
    state = cli_context(ctx)
    with open_database(state.settings(), require_current_schema=False) as database:
        revision = current_revision(database.engine)
    state.emit({"revision": revision}, revision or "(no revision)")


@app.command("status")
def status_command(ctx: typer.Context) -> None:
    """Where the database is, what it runs and whether migrations are at head."""
    state = cli_context(ctx)
    with open_database(state.settings(), require_current_schema=False) as database:
        revision = current_revision(database.engine)
        facts = database.facts
        data = {
            "url": database.display_url,
            "embedded": database.embedded,
            "server_version": facts.server_version,
            "wal_level": facts.wal_level,
            "pgvector_installed": facts.pgvector_installed_version,
            "pgvector_available": facts.pgvector_default_version,
            "revision": revision,
            "head": head_revision(),
            "at_head": revision == head_revision(),
        }
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
    settings = state.settings()
    with open_database(settings) as database:
        report = seed(database.engine, settings, update_plan=update_plan)
        job = ingest_samples(database.engine) if samples else None
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
