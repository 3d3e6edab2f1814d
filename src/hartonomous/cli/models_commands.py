"""`hartonomous models list / show ID`: ingested models the tenant holds, and their tensors."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from hartonomous.cli.atoms_commands import TenantOption, parse_atom_id
from hartonomous.cli.context import cli_context
from hartonomous.services import models as model_service
from hartonomous.services import open_platform

models_app = typer.Typer(help="Ingested models and their tensors.", no_args_is_help=True)


@models_app.command("list")
def list_models(ctx: typer.Context, tenant: TenantOption) -> None:
    """Models whose file the tenant holds."""
    state = cli_context(ctx)
    with open_platform(state.settings(), read_only=True) as platform:
        page = model_service.list_models(platform, tenant)
    data = [asdict(model) for model in page.items]
    human = "\n".join(
        f"{m['model_id'][:16]}…  {m['format']:11} {m['architecture'] or '-':10} "
        f"{m['parameter_count']:>14,} params  {m['tensor_count']} tensors"
        for m in data
    )
    state.emit(data, human or "(no models)")


@models_app.command("show")
def show_model(
    ctx: typer.Context,
    model_id: str,
    tenant: TenantOption,
    tensors: Annotated[int, typer.Option(help="How many tensors to list (-1: all)")] = -1,
) -> None:
    """A model's format, architecture, parameters, dtypes and tensors."""
    state = cli_context(ctx)
    digest = parse_atom_id(model_id)
    with open_platform(state.settings(), read_only=True) as platform:
        data = asdict(model_service.show_model(platform, tenant, digest, tensors=tensors))
    human = "\n".join(
        [
            f"model      {data['model_id']}",
            f"format     {data['format']}  architecture {data['architecture'] or '-'}",
            f"parameters {data['parameter_count']:,} in {data['tensor_count']} tensors",
            f"dtypes     {', '.join(f'{k}: {v}' for k, v in data['dtypes'].items())}",
            *(f"  {t['name']}  {t['dtype']}  {tuple(t['shape'])}" for t in data["tensors"]),
        ]
    )
    state.emit(data, human)
