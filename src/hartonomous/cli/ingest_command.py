"""`hartonomous ingest PATH… --tenant T`: files and folders into atoms, one job."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from hartonomous.cli.context import cli_context, shown
from hartonomous.ingest.pipeline import FileOutcome, IngestRequest, JobOutcome
from hartonomous.services import Platform, open_platform
from hartonomous.services.ingestion import run_ingestion

Visibility = Literal["private", "public"]


def ingest(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="Files and folders (recursive)")],
    *,
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant that will hold the files")],
    visibility: Annotated[
        str, typer.Option(help="private, or public (the public corpus)")
    ] = "private",
    principal: Annotated[str | None, typer.Option(help="Principal recorded on the job")] = None,
    dedup_policy: Annotated[
        str, typer.Option(help="Deduplication policy (near-duplicates links similar text)")
    ] = "default",
    label: Annotated[
        str | None,
        typer.Option(help="Label stored on each new holding (classification votes with it)"),
    ] = None,
) -> None:
    """Ingest files and folders; print the job summary."""
    state = cli_context(ctx)
    if visibility not in ("private", "public"):
        raise typer.BadParameter(
            f"{visibility!r} is not private or public", param_hint="--visibility"
        )
    request = IngestRequest(
        tenant_id=tenant,
        principal_id=principal,
        visibility=visibility,
        dedup_policy=dedup_policy,
        label=label,
    )
    with open_platform(state.settings()) as platform:
        if state.as_json or not sys.stdout.isatty():
            outcome = run_ingestion(platform, request, paths)
        else:
            outcome = _with_progress(platform, request, paths)
    state.emit({**outcome.as_dict(), "failed": _failed(outcome)}, _summary(outcome))
    if _failed(outcome):
        # Exit 1 when any file failed, so a script never mistakes a partial ingest for success.
        raise typer.Exit(1)


def _with_progress(platform: Platform, request: IngestRequest, paths: list[Path]) -> JobOutcome:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("ingesting"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}")
    ) as progress:
        task = progress.add_task("", total=None)

        def start(total: int) -> None:
            progress.update(task, total=total)

        def advance(outcome: FileOutcome) -> None:
            progress.update(task, advance=1, description=shown(Path(outcome.path).name))

        return run_ingestion(platform, request, paths, on_file=advance, on_start=start)


def _summary(outcome: JobOutcome) -> str:
    lines = [
        f"{f.status:9} {shown(f.path)}" + (f"  ({shown(f.error)})" if f.error else f"  {f.atom_id}")
        for f in outcome.files
    ]
    lines += [
        f"similar   {link['atom_id']} ~ {link['similar_to']} ({link['similarity']:.4f})"
        for f in outcome.files
        for link in f.similar
    ]
    lines.append(
        f"job {outcome.job_id}: {outcome.status}; {len(outcome.files)} files, "
        f"{_failed(outcome)} failed, "
        f"{outcome.new_bytes} new bytes, {outcome.reused_bytes} reused bytes"
    )
    unknown_only = sum(f.unknown_only for f in outcome.files)
    if unknown_only:
        lines.append(
            f"{unknown_only} text(s) made only of characters the text model does not know "
            "(such as emoji): stored, not embedded"
        )
    return "\n".join(lines)


def _failed(outcome: JobOutcome) -> int:
    return sum(1 for file in outcome.files if file.status == "failed")
