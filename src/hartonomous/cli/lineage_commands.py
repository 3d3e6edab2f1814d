"""`hartonomous lineage ID --up|--down [--depth N] [--json]`: the provenance graph around an
atom, model or inference (docs/provenance.md, "Lineage")."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from hartonomous.cli.atoms_commands import TenantOption
from hartonomous.cli.context import cli_context
from hartonomous.errors import UsageError
from hartonomous.services import lineage as lineage_service
from hartonomous.services import open_platform


def lineage(  # noqa: PLR0917 (typer: one parameter per argument and option)
    ctx: typer.Context,
    identifier: Annotated[
        str, typer.Argument(metavar="ID", help="An atom or model id (64 hex) or an inference id")
    ],
    tenant: TenantOption,
    up: Annotated[bool, typer.Option("--up", help="Where it came from")] = False,
    down: Annotated[bool, typer.Option("--down", help="What came from it")] = False,
    depth: Annotated[
        int, typer.Option(help=f"Steps to walk (1 to {lineage_service.MAX_DEPTH})")
    ] = lineage_service.DEFAULT_DEPTH,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Walk the provenance graph up or down from an atom, model or inference."""
    if up == down:
        raise UsageError("say one direction: --up (where it came from) or --down (what came of it)")
    state = cli_context(ctx)
    state.as_json = state.as_json or as_json
    with open_platform(state.settings()) as platform:
        found = lineage_service.lineage(platform, tenant, identifier, "up" if up else "down", depth)
    data = asdict(found)
    edges_from: dict[str, list[str]] = {}
    for item in found.edges:
        edges_from.setdefault(item.from_node_id, []).append(
            f"-[{item.relationship}]-> {item.to_node_id}"
        )
    lines = [f"{found.direction} from {found.start} (depth {found.depth})"]
    for node in found.nodes:
        lines.append(f"{'  ' * node.depth}{node.label} {node.node_id}{_detail(node)}")
    lines.append(f"{len(found.nodes)} nodes, {len(found.edges)} edges")
    lines.extend(
        f"  {source} {step}" for source, steps in sorted(edges_from.items()) for step in steps
    )
    if found.truncated:
        lines.append("truncated: more nodes are reachable than one answer holds")
    state.emit(data, "\n".join(lines))


def _detail(node: lineage_service.LineageNode) -> str:
    keys = ("task", "status", "format", "name", "dtype", "scope", "source_uri", "modality")
    shown = [f"{key}={node.properties[key]}" for key in keys if node.properties.get(key)]
    return f"  ({', '.join(shown)})" if shown else ""
