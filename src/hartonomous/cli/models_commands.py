"""`hartonomous models list / show ID`: ingested models the tenant holds, and their tensors."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from sqlalchemy import Connection, select

from hartonomous.atoms.read import require_visible
from hartonomous.cli.atoms_commands import TenantOption, parse_atom_id
from hartonomous.cli.context import cli_context
from hartonomous.db import open_database
from hartonomous.db.tables import holdings, model_tensors, models
from hartonomous.errors import NotFoundError
from hartonomous.security.tenants import require_active_tenant

models_app = typer.Typer(help="Ingested models and their tensors.", no_args_is_help=True)


def _model_dict(row: Any) -> dict[str, Any]:
    return {
        "model_id": bytes(row.atom_id).hex(),
        "format": row.format,
        "architecture": row.architecture,
        "parameter_count": row.parameter_count,
        "tensor_count": row.tensor_count,
        "dtypes": row.dtypes,
    }


@models_app.command("list")
def list_models(ctx: typer.Context, tenant: TenantOption) -> None:
    """Models whose file the tenant holds."""
    state = cli_context(ctx)
    with open_database(state.settings()) as database, database.engine.connect() as connection:
        require_active_tenant(connection, tenant)
        rows = connection.execute(
            select(models)
            .where(
                models.c.atom_id.in_(
                    select(holdings.c.atom_id).where(holdings.c.tenant_id == tenant)
                )
            )
            .order_by(models.c.created_at)
        ).all()
    data = [_model_dict(row) for row in rows]
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
    with open_database(state.settings()) as database, database.engine.connect() as connection:
        require_active_tenant(connection, tenant)
        require_visible(connection, tenant, digest)
        data = _describe(connection, digest, tensors)
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


class ModelNotFoundError(NotFoundError, LookupError):
    pass


def _describe(connection: Connection, digest: bytes, limit: int) -> dict[str, Any]:
    row = connection.execute(select(models).where(models.c.atom_id == digest)).one_or_none()
    if row is None:
        raise ModelNotFoundError(f"atom {digest.hex()} is not a model")
    query = (
        select(model_tensors)
        .where(model_tensors.c.model_atom_id == digest)
        .order_by(model_tensors.c.ordinal)
    )
    if limit >= 0:
        query = query.limit(limit)
    data = _model_dict(row)
    data["metadata"] = row.metadata
    data["tensors"] = [
        {
            "name": t.name,
            "dtype": t.dtype,
            "shape": list(t.shape),
            "parameter_count": t.parameter_count,
            "atom_id": bytes(t.tensor_atom_id).hex() if t.tensor_atom_id else None,
            "byte_offset": t.byte_offset,
            "byte_length": t.byte_length,
        }
        for t in connection.execute(query)
    ]
    return data
