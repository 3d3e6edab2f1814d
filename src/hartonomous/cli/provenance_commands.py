"""`hartonomous explain INFERENCE` and `hartonomous streams show ID [--raw FILE]`: one
inference's provenance and cost, and its generation stream (docs/provenance.md)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from hartonomous.cli.atoms_commands import TenantOption
from hartonomous.cli.context import cli_context
from hartonomous.inference.explain import Explanation
from hartonomous.inference.stream_view import DecodedSegment, DecodedStream
from hartonomous.services import open_platform, provenance

streams_app = typer.Typer(
    help="Generation streams (AtomicStream) of inferences.", no_args_is_help=True
)
_PREVIEW = 72


def explain(
    ctx: typer.Context,
    inference_id: Annotated[str, typer.Argument(metavar="INFERENCE", help="The inference id")],
    tenant: TenantOption,
) -> None:
    """Inputs and their sources, the model, steps, outputs, the stream and the cost."""
    state = cli_context(ctx)
    with open_platform(state.settings()) as platform:
        found = provenance.explain_inference(platform, tenant, inference_id)
    state.emit(asdict(found), _explanation(found))


def _explanation(e: Explanation) -> str:
    lines = [
        f"inference  {e.inference_id}  {e.task}  {e.status}"
        + (
            "  (cache hit" + (f" of {e.cached_from})" if e.cached_from else ")")
            if e.cache_hit
            else ""
        ),
        f"requested  {e.requested_at.isoformat()} by {e.principal_id or '-'}"
        + (f"  took {e.duration_ms:g} ms" if e.duration_ms is not None else ""),
    ]
    if e.error:
        lines.append(f"error      {e.error}")
    for item in e.inputs:
        lines.append(f"input      {item.name}  atom {item.atom_id}")
        lines.extend(
            f"  from     {s.source_uri} ({s.source_type}"
            + (f", job {s.job_id})" if s.job_id else ")")
            for s in item.sources
        )
    if e.model is not None:
        m = e.model
        dtypes = ", ".join(f"{k}: {v}" for k, v in m.dtypes.items()) or "-"
        lines.append(
            f"model      {m.model_id}  {m.format or '?'}  {m.tensor_count} tensors, "
            f"{m.parameter_count:,} parameters ({dtypes})"
        )
    lines.extend(
        f"step {s.step_number:<5} {s.operation}  {s.duration_ms:g} ms"
        + (f"  index {s.index_used}" if s.index_used else "")
        # Examined → returned; a step that counts only one shows "-" for the other.
        + (
            f"  rows {_count(s.rows_examined)}→{_count(s.rows_returned)}"
            if s.rows_examined is not None or s.rows_returned is not None
            else ""
        )
        for s in e.steps
    )
    lines.extend(f"output     {o.name}  atom {o.atom_id}" for o in e.outputs)
    if e.stream is not None:
        lines.append(f"stream     {e.stream.stream_id}  {e.stream.size} bytes")
        lines.extend(f"  {_segment(s)}" for s in e.stream.segments)
    c = e.cost
    if c.state == "billed":
        lines.append(
            f"cost       {c.units} units, multiplier {c.multiplier}: {c.total_dcu} DCU, "
            f"cost {c.total_cost}"
        )
    else:
        lines.append(f"cost       {c.state}")
    if e.rating is not None or e.feedback:
        lines.append(f"rating     {e.rating if e.rating is not None else '-'}  {e.feedback or ''}")
    return "\n".join(lines)


def _segment(s: DecodedSegment) -> str:
    payload = s.payload if s.encoding == "text" else f"base64:{s.payload}"
    if len(payload) > _PREVIEW:
        payload = payload[: _PREVIEW - 1] + "…"
    return (
        f"#{s.index} {s.kind:<10} {s.timestamp.isoformat()}  {s.content_type or '-'}  "
        f"{s.payload_size} B  {payload!r}" + (f"  meta {s.metadata}" if s.metadata else "")
    )


@streams_app.command("show")
def show_stream(
    ctx: typer.Context,
    stream_id: Annotated[str, typer.Argument(metavar="ID", help="The stream id")],
    tenant: TenantOption,
    raw: Annotated[
        Path | None,
        typer.Option(
            "--raw", help="Write the stream's AtomicStream bytes to this file", dir_okay=False
        ),
    ] = None,
) -> None:
    """A generation stream decoded: header and segments (or its bytes with --raw FILE)."""
    state = cli_context(ctx)
    with open_platform(state.settings()) as platform:
        if raw is not None:
            data = provenance.stream_bytes(platform, tenant, stream_id)
        found = provenance.show_stream(platform, tenant, stream_id)
    if raw is not None:
        raw.write_bytes(data)
    state.emit(asdict(found), _stream(found, raw))


def _stream(s: DecodedStream, raw: Path | None) -> str:
    lines = [
        f"stream     {s.stream_id}  of inference {s.inference_id}",
        f"scope      {s.scope or '-'}  model {s.model or '-'}  created {s.created.isoformat()}",
        f"size       {s.size} bytes, {len(s.segments)} segments",
        *(f"  {_segment(segment)}" for segment in s.segments),
    ]
    if s.metadata:
        lines.insert(2, f"metadata   {s.metadata}")
    if raw is not None:
        lines.append(f"bytes written to {raw}")
    return "\n".join(lines)


def _count(rows: int | None) -> str:
    return "-" if rows is None else str(rows)
