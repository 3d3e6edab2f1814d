"""`hartonomous tenants …`: create, list, show, disable and enable tenants.

Parsing and rendering only; the rules and the SQL live in ``hartonomous.security.tenants``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from hartonomous.cli.context import cli_context, shown
from hartonomous.db import open_database
from hartonomous.security.tenants import (
    Tenant,
    create_tenant,
    get_tenant,
    list_tenants,
    set_tenant_state,
)

tenants_app = typer.Typer(
    help="Tenants: create, list, show, disable, enable.", no_args_is_help=True
)

TenantArgument = Annotated[str, typer.Argument(help="Tenant id", metavar="TENANT_ID")]


@tenants_app.command("create")
def create(
    ctx: typer.Context,
    tenant_id: TenantArgument,
    name: Annotated[str | None, typer.Option("--name", help="Display name (default: id)")] = None,
) -> None:
    """Create an active tenant."""
    state = cli_context(ctx)
    with open_database(state.settings()) as database, database.engine.begin() as connection:
        tenant = create_tenant(connection, tenant_id, name)
    state.emit(asdict(tenant), f"created tenant {tenant.tenant_id} ({shown(tenant.display_name)})")


@tenants_app.command("list")
def list_command(ctx: typer.Context) -> None:
    """Every tenant with its state and how many holdings and principals it has."""
    state = cli_context(ctx)
    with open_database(state.settings()) as database, database.engine.connect() as connection:
        found = list_tenants(connection)
    lines = [
        f"{t.tenant_id:24} {t.state:8} {t.holdings:>8} holdings {t.principals:>4} principals  "
        f"{shown(t.display_name)}"
        for t in found
    ]
    state.emit([asdict(t) for t in found], "\n".join(lines) or "(no tenants)")


@tenants_app.command("show")
def show(ctx: typer.Context, tenant_id: TenantArgument) -> None:
    """One tenant: name, state, dates and counts."""
    state = cli_context(ctx)
    with open_database(state.settings()) as database, database.engine.connect() as connection:
        tenant = get_tenant(connection, tenant_id)
    state.emit(asdict(tenant), _describe(tenant))


@tenants_app.command("disable")
def disable(ctx: typer.Context, tenant_id: TenantArgument) -> None:
    """Refuse the tenant in every command (its data is kept); `tenants enable` undoes it."""
    _set_state(ctx, tenant_id, enable=False)


@tenants_app.command("enable")
def enable(ctx: typer.Context, tenant_id: TenantArgument) -> None:
    """Let a disabled tenant use the platform again."""
    _set_state(ctx, tenant_id, enable=True)


def _set_state(ctx: typer.Context, tenant_id: str, *, enable: bool) -> None:
    state = cli_context(ctx)
    with open_database(state.settings()) as database, database.engine.begin() as connection:
        tenant = set_tenant_state(connection, tenant_id, "active" if enable else "disabled")
    state.emit(asdict(tenant), f"tenant {tenant.tenant_id} is {tenant.state}")


def _describe(tenant: Tenant) -> str:
    return "\n".join(
        [
            f"tenant      {tenant.tenant_id}",
            f"name        {shown(tenant.display_name)}",
            f"state       {tenant.state}",
            f"created     {tenant.created_at.isoformat()}",
            f"updated     {tenant.updated_at.isoformat()}",
            f"holdings    {tenant.holdings}",
            f"principals  {tenant.principals}",
        ]
    )
