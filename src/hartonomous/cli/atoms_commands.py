"""`hartonomous atoms …` and `hartonomous holdings …`: inspect, export, release, collect."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from hartonomous.cli.context import cli_context, shown
from hartonomous.services import open_platform
from hartonomous.services.atoms import (
    atom_component_stream,
    atom_content,
    parse_atom_id,
    show_atom,
)
from hartonomous.services.holdings import (
    all_holdings,
    collect_unreferenced_atoms,
)
from hartonomous.services.holdings import (
    delete_holding as release,
)

__all__ = ["TenantOption", "atoms_app", "holdings_app", "parse_atom_id"]

atoms_app = typer.Typer(help="Atoms: inspect, export, collect garbage.", no_args_is_help=True)
holdings_app = typer.Typer(help="Holdings: what a tenant owns.", no_args_is_help=True)

TenantOption = Annotated[str, typer.Option("--tenant", help="The caller's tenant")]


@atoms_app.command("show")
def show(ctx: typer.Context, atom_id: str, tenant: TenantOption) -> None:
    """The atom, a summary of its children and the tenant's holdings that contain it."""
    state = cli_context(ctx)
    digest = parse_atom_id(atom_id)
    with open_platform(state.settings(), read_only=True) as platform:
        summary = show_atom(platform, tenant, digest)
    text = summary.canonical_text
    lines = [
        f"atom       {summary.atom_id}",
        f"kind       {summary.kind} ({summary.modality}/{summary.subtype})",
        f"size       {summary.size_bytes} bytes; referenced {summary.reference_count} times",
        f"children   {summary.components} in {summary.runs} runs "
        f"({summary.distinct_children} distinct)",
    ]
    if text:
        lines.append(f"text       {text[:200]!r}{'…' if len(text) > 200 else ''}")
    lines += [f"held by    {shown(h['source_uri'])} ({h['visibility']})" for h in summary.holders]
    state.emit(asdict(summary), "\n".join(lines))


@atoms_app.command("export")
def export(
    ctx: typer.Context,
    atom_id: str,
    tenant: TenantOption,
    output: Annotated[Path, typer.Option("-o", "--output", help="File to write")],
    as_component_stream: Annotated[
        bool,
        typer.Option(
            "--component-stream",
            help="Write a composite atom's ComponentStream (v1 binary) instead of its bytes",
        ),
    ] = False,
) -> None:
    """Write the atom's exact original bytes (or its ComponentStream) to a file."""
    state = cli_context(ctx)
    digest = parse_atom_id(atom_id)
    partial = output.with_name(output.name + ".partial")
    with open_platform(state.settings(), read_only=True) as platform:
        if as_component_stream:
            chunks: Iterable[bytes] = [atom_component_stream(platform, tenant, digest)]
        else:
            chunks = atom_content(platform, tenant, digest).chunks()
        # Write aside and rename: a failed export never leaves a truncated file behind.
        try:
            with partial.open("wb") as handle:
                written = sum(handle.write(chunk) for chunk in chunks)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        partial.replace(output)
    state.emit(
        {"atom_id": atom_id, "path": str(output), "bytes": written},
        f"{written} bytes -> {output}",
    )


@atoms_app.command("gc")
def gc(
    ctx: typer.Context,
    batch_size: Annotated[int, typer.Option(min=1, max=100_000)] = 1000,
) -> None:
    """Delete atoms nothing references (safe alongside ingestion)."""
    state = cli_context(ctx)
    with open_platform(state.settings()) as platform:
        report = collect_unreferenced_atoms(platform, batch_size)
    state.emit(
        asdict(report),
        f"collected {report.atoms_deleted} atoms ({report.bytes_freed} payload bytes) "
        f"in {report.batches} batches",
    )


@holdings_app.command("list")
def list_command(ctx: typer.Context, tenant: TenantOption) -> None:
    """The tenant's holdings, newest first."""
    state = cli_context(ctx)
    with open_platform(state.settings(), read_only=True) as platform:
        data = all_holdings(platform, tenant)
    human = "\n".join(f"{h['holding_id']}  {h['atom_id']}  {shown(h['source_uri'])}" for h in data)
    state.emit(data, human or "(no holdings)")


@holdings_app.command("delete")
def delete_holding(ctx: typer.Context, holding_id: uuid.UUID, tenant: TenantOption) -> None:
    """Release a holding; `atoms gc` then collects what nothing else references."""
    state = cli_context(ctx)
    with open_platform(state.settings()) as platform:
        release(platform, tenant, holding_id)
    state.emit({"holding_id": str(holding_id), "deleted": True}, f"released {holding_id}")
