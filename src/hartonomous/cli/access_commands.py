"""`hartonomous principals …` and `hartonomous keys …`: a tenant's principals and API keys.

Parsing and rendering only; the use cases live in ``hartonomous.services.tenancy``. A key's
token is printed once, by the command that creates it (`keys create`, `keys rotate`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, TypeVar

import typer

from hartonomous.cli.context import CliContext, cli_context, shown
from hartonomous.errors import UsageError
from hartonomous.security.keys import ApiKey, IssuedKey
from hartonomous.security.principals import Principal
from hartonomous.security.roles import Role
from hartonomous.services import Platform, open_platform, tenancy
from hartonomous.services.pagination import Page

principals_app = typer.Typer(
    help="A tenant's principals: create, list, show, disable, enable, set-role.",
    no_args_is_help=True,
)
keys_app = typer.Typer(
    help="A tenant's API keys: create, list, revoke, rotate.", no_args_is_help=True
)

TenantArgument = Annotated[str, typer.Argument(help="Tenant id", metavar="TENANT_ID")]
PrincipalArgument = Annotated[str, typer.Argument(help="Principal id", metavar="PRINCIPAL_ID")]
KeyArgument = Annotated[str, typer.Argument(help="Key id (the part after hk_)", metavar="KEY_ID")]
GraceOption = Annotated[
    float,
    typer.Option(
        "--grace-seconds", min=0, help="Seconds the old key keeps working (default: none)"
    ),
]
ExpiresOption = Annotated[
    str | None,
    typer.Option(
        "--expires-at", help="ISO-8601 time the key stops working (UTC when no offset is given)"
    ),
]
T = TypeVar("T")


class KindOption(StrEnum):
    """A principal's kind, as the API's `kind` member names it (security/principals.py)."""

    USER = "user"
    SERVICE = "service"


def all_pages(fetch: Callable[[str | None], Page[T]]) -> Iterator[T]:
    """Every item of a paged listing, fetching page after page (``fetch(cursor)``)."""
    cursor: str | None = None
    while True:
        page = fetch(cursor)
        yield from page.items
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def _expiry(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--expires-at {text!r} is not an ISO-8601 time") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _run(
    ctx: typer.Context, action: Callable[[Platform], T], *, read_only: bool = False
) -> tuple[CliContext, T]:
    """``read_only``: ``action`` writes nothing (a server the command starts does not archive)."""
    state = cli_context(ctx)
    with open_platform(state.settings(), read_only=read_only) as platform:
        return state, action(platform)


@principals_app.command("create")
def create_principal(  # noqa: PLR0917 - typer passes parameters by keyword
    ctx: typer.Context,
    tenant_id: TenantArgument,
    principal_id: PrincipalArgument,
    role: Annotated[Role, typer.Option("--role", help="What its keys may do")] = Role.USER,
    display_name: Annotated[
        str | None, typer.Option("--display-name", help="Display name (default: id)")
    ] = None,
    kind: Annotated[
        KindOption, typer.Option("--kind", help="user (a person) or service")
    ] = KindOption.USER,
) -> None:
    """Create an active principal of a tenant with a role."""
    state, principal = _run(
        ctx,
        lambda p: tenancy.create_principal(
            p,
            tenant_id,
            principal_id,
            role=role,
            display_name=display_name,
            kind="service" if kind is KindOption.SERVICE else "user",
        ),
    )
    state.emit(_principal_data(principal), f"created {_principal_line(principal)}")


@principals_app.command("list")
def list_principals(ctx: typer.Context, tenant_id: TenantArgument) -> None:
    """Every principal of the tenant with its role, state and active keys."""
    state, found = _run(
        ctx,
        lambda p: list(
            all_pages(
                lambda c: tenancy.list_principals(p, tenant_id, limit=tenancy.MAX_LIMIT, cursor=c)
            )
        ),
        read_only=True,
    )
    lines = [_principal_line(principal) for principal in found]
    state.emit([_principal_data(p) for p in found], "\n".join(lines) or "(no principals)")


@principals_app.command("show")
def show_principal(
    ctx: typer.Context, tenant_id: TenantArgument, principal_id: PrincipalArgument
) -> None:
    """One principal."""
    state, principal = _run(
        ctx, lambda p: tenancy.show_principal(p, tenant_id, principal_id), read_only=True
    )
    state.emit(_principal_data(principal), _principal_line(principal))


@principals_app.command("disable")
def disable_principal(
    ctx: typer.Context, tenant_id: TenantArgument, principal_id: PrincipalArgument
) -> None:
    """Stop the principal's keys and ingestion at once; `principals enable` undoes it."""
    _update(ctx, tenant_id, principal_id, state="disabled")


@principals_app.command("enable")
def enable_principal(
    ctx: typer.Context, tenant_id: TenantArgument, principal_id: PrincipalArgument
) -> None:
    """Let a disabled principal's keys work again."""
    _update(ctx, tenant_id, principal_id, state="active")


@principals_app.command("set-role")
def set_role(
    ctx: typer.Context,
    tenant_id: TenantArgument,
    principal_id: PrincipalArgument,
    role: Annotated[Role, typer.Argument(help="user, data-scientist or admin")],
) -> None:
    """Change what the principal's keys may do (from their next request)."""
    _update(ctx, tenant_id, principal_id, role=role)


def _update(ctx: typer.Context, tenant_id: str, principal_id: str, **change: Any) -> None:
    state, principal = _run(
        ctx, lambda p: tenancy.update_principal(p, tenant_id, principal_id, **change)
    )
    state.emit(_principal_data(principal), _principal_line(principal))


@keys_app.command("create")
def create_key(
    ctx: typer.Context,
    tenant_id: TenantArgument,
    principal_id: PrincipalArgument,
    label: Annotated[str, typer.Option("--label", help="What the key is for")] = "",
    expires_at: ExpiresOption = None,
) -> None:
    """Issue an API key to a principal; its token is printed this once and stored nowhere."""
    expiry = _expiry(expires_at)
    state, issued = _run(
        ctx,
        lambda p: tenancy.create_key(p, tenant_id, principal_id, label=label, expires_at=expiry),
    )
    state.emit(_issued_data(issued), _issued_text(issued))


@keys_app.command("list")
def list_keys(
    ctx: typer.Context,
    tenant_id: TenantArgument,
    principal: Annotated[str | None, typer.Option("--principal", help="Only this one's")] = None,
) -> None:
    """The tenant's keys, oldest first: id, principal, state, dates (never a secret)."""
    state, found = _run(
        ctx,
        lambda p: list(
            all_pages(
                lambda c: tenancy.list_keys(
                    p, tenant_id, principal_id=principal, limit=tenancy.MAX_LIMIT, cursor=c
                )
            )
        ),
        read_only=True,
    )
    lines = [_key_line(key) for key in found]
    state.emit([_key_data(key) for key in found], "\n".join(lines) or "(no keys)")


@keys_app.command("revoke")
def revoke_key(
    ctx: typer.Context, tenant_id: TenantArgument, key_id: KeyArgument, grace: GraceOption = 0
) -> None:
    """Revoke a key, at once or after --grace seconds."""
    state, key = _run(ctx, lambda p: tenancy.revoke_key(p, tenant_id, key_id, grace_seconds=grace))
    state.emit(_key_data(key), _key_line(key))


@keys_app.command("rotate")
def rotate_key(
    ctx: typer.Context,
    tenant_id: TenantArgument,
    key_id: KeyArgument,
    grace: GraceOption = 0,
    expires_at: ExpiresOption = None,
) -> None:
    """Issue a new key to the same principal and revoke this one (after --grace seconds)."""
    expiry = _expiry(expires_at)
    state, rotated = _run(
        ctx,
        lambda p: tenancy.rotate_key(p, tenant_id, key_id, grace_seconds=grace, expires_at=expiry),
    )
    state.emit(
        {"new": _issued_data(rotated.new), "old": _key_data(rotated.old)},
        f"{_issued_text(rotated.new)}\nold key: {_key_line(rotated.old)}",
    )


def _principal_data(principal: Principal) -> dict[str, Any]:
    return {**asdict(principal), "role": principal.role.value}


def _principal_line(principal: Principal) -> str:
    return (
        f"principal {principal.tenant_id}/{principal.principal_id}  role {principal.role.value}  "
        f"{principal.state}  {principal.active_keys} active keys  {shown(principal.display_name)}"
    )


def _key_data(key: ApiKey) -> dict[str, Any]:
    return asdict(key)


def _key_line(key: ApiKey) -> str:
    dates = [f"created {key.created_at.isoformat()}"]
    for name, value in (
        ("expires", key.expires_at),
        ("revoked", key.revoked_at),
        ("last used", key.last_used_at),
    ):
        if value is not None:
            dates.append(f"{name} {value.isoformat()}")
    return (
        f"key {key.key_id}  {key.principal_id}  {key.state}  {', '.join(dates)}  {shown(key.label)}"
    )


def _issued_data(issued: IssuedKey) -> dict[str, Any]:
    return {**_key_data(issued.key), "token": issued.token}


def _issued_text(issued: IssuedKey) -> str:
    return f"{_key_line(issued.key)}\ntoken (shown once, not stored): {issued.token}"
