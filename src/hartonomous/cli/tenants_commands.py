"""`hartonomous tenants …`: create, list, show, disable and enable tenants.

Parsing and rendering only; the use cases live in ``hartonomous.services.tenancy``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from hartonomous.cli.access_commands import all_pages
from hartonomous.cli.context import cli_context, shown
from hartonomous.security.tenants import Tenant
from hartonomous.services import open_platform, tenancy

tenants_app = typer.Typer(
    help="Tenants: create, list, show, disable, enable.", no_args_is_help=True
)

TenantArgument = Annotated[str, typer.Argument(help="Tenant id", metavar="TENANT_ID")]


@tenants_app.command("create")
def create(
    ctx: typer.Context,
    tenant_id: TenantArgument,
    display_name: Annotated[
        str | None, typer.Option("--display-name", help="Display name (default: id)")
    ] = None,
) -> None:
    """Create an active tenant."""
    state = cli_context(ctx)
    with open_platform(state.settings()) as platform:
        tenant = tenancy.create_tenant(platform, tenant_id, display_name)
    state.emit(asdict(tenant), f"created tenant {tenant.tenant_id} ({shown(tenant.display_name)})")


@tenants_app.command("list")
def list_command(ctx: typer.Context) -> None:
    """Every tenant with its state and how many holdings and principals it has."""
    state = cli_context(ctx)
    with open_platform(state.settings(), read_only=True) as platform:
        found = list(
            all_pages(lambda c: tenancy.list_tenants(platform, limit=tenancy.MAX_LIMIT, cursor=c))
        )
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
    with open_platform(state.settings(), read_only=True) as platform:
        tenant = tenancy.show_tenant(platform, tenant_id)
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
    with open_platform(state.settings()) as platform:
        tenant = tenancy.set_tenant_state(platform, tenant_id, "active" if enable else "disabled")
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
