"""`hartonomous billing plans list/show/create/update/activate/deactivate` and
`hartonomous billing invoice`: the rate-plan catalogue and invoice previews (docs/billing.md)."""

from __future__ import annotations

import sys
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

import typer
from pydantic import BaseModel, TypeAdapter, ValidationError

from hartonomous.cli.context import cli_context
from hartonomous.errors import UsageError
from hartonomous.services import open_platform
from hartonomous.services.billing import (
    PlanChange,
    PlanDraft,
    PlanView,
    change_plan,
    create_plan,
    invoice,
    list_plans,
    set_plan_active,
    show_plan,
    validated,
)

billing_app = typer.Typer(help="Rate plans and invoice previews.", no_args_is_help=True)
plans_app = typer.Typer(help="The rate-plan catalogue (versioned).", no_args_is_help=True)
billing_app.add_typer(plans_app, name="plans")

Tenant = Annotated[
    str | None, typer.Option("--tenant", help="The tenant's own plan (default: a global plan)")
]
Effective = Annotated[
    str | None,
    typer.Option(
        "--effective-from",
        help="When the change takes effect, ISO 8601 with offset (default: the earliest allowed)",
    ),
]
Sets = Annotated[
    list[str] | None,
    typer.Option("--set", help="FIELD=VALUE, e.g. monthly_fee=99 or seat_price=12.5 (repeat)"),
]
Rates = Annotated[
    list[str] | None,
    typer.Option("--rate", help="OPERATION=RATE[:UNIT[:CATEGORY]] (repeat)"),
]
Multipliers = Annotated[
    list[str] | None,
    typer.Option("--multiplier", help="DIMENSION:KEY=VALUE, e.g. generation:image=3 (repeat)"),
]


class InvoiceFormat(StrEnum):
    JSON = "json"
    CSV = "csv"


@plans_app.command("list")
def plans_list(ctx: typer.Context, tenant: Tenant = None) -> None:
    """Every plan with the version in force now (a tenant's and the global ones with --tenant)."""
    state = cli_context(ctx)
    with open_platform(state.settings(), read_only=True) as platform:
        plans = list_plans(platform, tenant)
    data = [plan.model_dump(mode="json") for plan in plans]
    human = "\n".join(
        f"{plan.tenant_id or '(global)':20} {plan.plan_code:24} "
        f"{'active' if plan.is_active else 'inactive':8} {plan.versions} version(s), "
        f"in force from {plan.effective_from.isoformat()}"
        + (f", next change {plan.next_change.isoformat()}" if plan.next_change else "")
        for plan in plans
    )
    state.emit(data, human or "no plans")


@plans_app.command("show")
def plans_show(
    ctx: typer.Context,
    plan_code: Annotated[str, typer.Argument(help="The plan's code")],
    tenant: Tenant = None,
) -> None:
    """Every version of a plan with its rates and multipliers, oldest first."""
    state = cli_context(ctx)
    with open_platform(state.settings(), read_only=True) as platform:
        versions = show_plan(platform, plan_code, tenant)
    state.emit(
        [version.model_dump(mode="json") for version in versions],
        "\n\n".join(_describe(version) for version in versions),
    )


@plans_app.command("create")
def plans_create(
    ctx: typer.Context,
    plan_code: Annotated[str, typer.Argument(help="lower-case letters, digits and '_'")],
    *,
    name: Annotated[str, typer.Option(help="The plan's display name")],
    tenant: Tenant = None,
    effective_from: Effective = None,
    fields: Sets = None,
    rates: Rates = None,
    multipliers: Multipliers = None,
) -> None:
    """Create a plan (its first version)."""
    state = cli_context(ctx)
    draft = validated(
        PlanDraft,
        {
            **_fields(fields, PlanDraft),
            "plan_code": plan_code,
            "name": name,
            "tenant_id": tenant,
            "effective_from": _moment(effective_from),
            "rates": [_rate(text) for text in rates or ()],
            "multipliers": [_multiplier(text) for text in multipliers or ()],
        },
    )
    with open_platform(state.settings()) as platform:
        version = create_plan(platform, draft)
    state.emit(version.model_dump(mode="json"), f"created\n{_describe(version)}")


@plans_app.command("update")
def plans_update(
    ctx: typer.Context,
    plan_code: Annotated[str, typer.Argument(help="The plan's code")],
    *,
    tenant: Tenant = None,
    effective_from: Effective = None,
    fields: Sets = None,
    rates: Rates = None,
    remove_rates: Annotated[
        list[str] | None, typer.Option("--remove-rate", help="OPERATION (repeat)")
    ] = None,
    multipliers: Multipliers = None,
    remove_multipliers: Annotated[
        list[str] | None, typer.Option("--remove-multiplier", help="DIMENSION:KEY (repeat)")
    ] = None,
) -> None:
    """Write a new version of a plan, effective from --effective-from."""
    state = cli_context(ctx)
    change = validated(
        PlanChange,
        {
            **_fields(fields, PlanChange),
            "effective_from": _moment(effective_from),
            "rates": [_rate(text) for text in rates or ()],
            "remove_rates": list(remove_rates or ()),
            "multipliers": [_multiplier(text) for text in multipliers or ()],
            "remove_multipliers": [_multiplier_key(text) for text in remove_multipliers or ()],
        },
    )
    with open_platform(state.settings()) as platform:
        version = change_plan(platform, plan_code, change, tenant)
    state.emit(version.model_dump(mode="json"), f"new version\n{_describe(version)}")


@plans_app.command("activate")
def plans_activate(
    ctx: typer.Context,
    plan_code: Annotated[str, typer.Argument(help="The plan's code")],
    tenant: Tenant = None,
    effective_from: Effective = None,
) -> None:
    """Make a plan active from --effective-from (a new version)."""
    _set_active(ctx, plan_code, True, tenant, effective_from)


@plans_app.command("deactivate")
def plans_deactivate(
    ctx: typer.Context,
    plan_code: Annotated[str, typer.Argument(help="The plan's code")],
    tenant: Tenant = None,
    effective_from: Effective = None,
) -> None:
    """Make a plan inactive from --effective-from (a new version); its tenants fall back to
    the global plan, then to the billing settings."""
    _set_active(ctx, plan_code, False, tenant, effective_from)


@billing_app.command("invoice")
def invoice_command(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Option("--tenant", help="The tenant invoiced")],
    period: Annotated[str, typer.Option(help="The billing period, YYYY-MM")],
    output_format: Annotated[
        InvoiceFormat, typer.Option("--format", help="json or csv")
    ] = InvoiceFormat.JSON,
) -> None:
    """Preview a tenant's invoice for a period: fee, usage, storage and seat lines, in cents."""
    state = cli_context(ctx)
    with open_platform(state.settings(), read_only=True) as platform:
        preview = invoice(platform, tenant, period, across_tenants=True)
    sys.stdout.write(preview.to_csv() if output_format is InvoiceFormat.CSV else preview.to_json())
    sys.stdout.flush()


def _set_active(
    ctx: typer.Context, plan_code: str, active: bool, tenant: str | None, effective: str | None
) -> None:
    state = cli_context(ctx)
    with open_platform(state.settings(), read_only=True) as platform:
        version, changed = set_plan_active(
            platform, plan_code, active, tenant_id=tenant, effective_from=_moment(effective)
        )
    state_name = "active" if active else "inactive"
    human = (
        f"plan {plan_code} {state_name} from {version.effective_from.isoformat()}"
        if changed
        else f"plan {plan_code} is {state_name} already; nothing written"
    )
    state.emit({**version.model_dump(mode="json"), "changed": changed}, human)


def _describe(version: PlanView) -> str:
    lines = [
        f"{version.plan_code} ({version.name}) {version.tenant_id or '(global)'} "
        f"{'active' if version.is_active else 'inactive'} from "
        f"{version.effective_from.isoformat()}  [{version.rate_plan_id}]",
        f"  monthly fee {version.monthly_fee}, default rate {version.default_rate} DCU, "
        f"{version.unit_price_per_dcu} per DCU, storage {version.storage_price_per_gb_month} "
        f"per GB-month, seat {version.seat_price}",
        f"  included: {version.included_private_storage_gb} GB private, "
        f"{version.included_public_storage_gb} GB public, {version.included_seat_count} seats",
        *(
            f"  rate {r.operation} = {r.rate} per {r.unit_of_measure or 'unit'}"
            + (f" ({r.category})" if r.category else "")
            for r in version.rates
        ),
        *(f"  multiplier {m.dimension}:{m.key} = {m.multiplier}" for m in version.multipliers),
    ]
    return "\n".join(lines)


def _fields(pairs: list[str] | None, model: type[BaseModel]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for pair in pairs or ():
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--set {pair!r} is not FIELD=VALUE")
        fields[name.strip()] = _typed(model, name.strip(), value.strip())
    return fields


def _typed(model: type[BaseModel], name: str, text: str) -> object:
    """``text`` read as the field's type (``25`` an integer, ``true`` a bool): the model
    takes JSON bodies strictly, where a string is never a number. Unread, it stays text and
    the model names the field."""
    field = model.model_fields.get(name)
    if field is None or field.annotation is None:
        return text
    adapter = TypeAdapter(field.annotation)
    try:
        return adapter.validate_strings(text)
    except ValidationError:
        pass
    # A strict integer refuses every string, even in string mode: read the text as JSON (25).
    try:
        return adapter.validate_json(text)
    except ValidationError:
        return text


def _rate(text: str) -> dict[str, str]:
    operation, sep, rest = text.partition("=")
    if not sep or not operation.strip() or not rest.strip():
        raise UsageError(f"--rate {text!r} is not OPERATION=RATE[:UNIT[:CATEGORY]]")
    parts = rest.split(":", 2)
    rate: dict[str, str] = {"operation": operation.strip(), "rate": parts[0].strip()}
    if len(parts) > 1:
        rate["unit_of_measure"] = parts[1].strip()
    if len(parts) > 2:
        rate["category"] = parts[2].strip()
    return rate


def _multiplier(text: str) -> dict[str, str]:
    target, sep, value = text.partition("=")
    if not sep:
        raise UsageError(f"--multiplier {text!r} is not DIMENSION:KEY=VALUE")
    return {**_multiplier_key(target), "multiplier": value.strip()}


def _multiplier_key(text: str) -> dict[str, str]:
    dimension, sep, key = text.partition(":")
    if not sep or not dimension.strip() or not key.strip():
        raise UsageError(f"{text!r} is not DIMENSION:KEY")
    return {"dimension": dimension.strip(), "key": key.strip()}


def _moment(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--effective-from {text!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise UsageError(f"--effective-from {text!r} needs a UTC offset (e.g. +00:00)")
    return moment
