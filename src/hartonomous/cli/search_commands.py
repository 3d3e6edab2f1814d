"""`hartonomous embed` (stdin text -> JSON lines; `--backfill`) and `hartonomous search`."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from hartonomous.cli.context import cli_context, shown
from hartonomous.cli.errors import CommandUsageError
from hartonomous.embed.spaces import SPACES, TEXT_SPACE, EmbeddingSpace, get_space
from hartonomous.search.fusion import Signal
from hartonomous.search.planner import MAX_K

_STDIN_BATCH = 256


class EmbedCommandError(CommandUsageError):
    pass


def embed(
    ctx: typer.Context,
    backfill: Annotated[
        bool,
        typer.Option(
            "--backfill", help="Embed stored atoms that have no vector yet, then index them"
        ),
    ] = False,
    space: Annotated[
        str | None,
        typer.Option(help=f"Embedding space (stdin: {TEXT_SPACE}; backfill: default all)"),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=4096)] = 256,
) -> None:
    """Text lines on stdin -> one JSON line each {"text", "vector"[, "error"]}; or --backfill."""
    state = cli_context(ctx)
    chosen = get_space(space) if space is not None else None
    if backfill:
        _backfill(ctx, [chosen] if chosen is not None else list(SPACES), batch_size)
        return
    if chosen is not None and chosen.name != TEXT_SPACE:
        raise EmbedCommandError(
            f"space {chosen.name!r} embeds {chosen.modality}; `embed` reads text lines "
            f"(space {TEXT_SPACE!r})"
        )
    state.settings()  # logging configured like every other command
    failed = 0
    batch: list[bytes] = []
    # Bytes, not text: a line that is not UTF-8 is that line's error, not the whole run's.
    for line in sys.stdin.buffer:
        batch.append(line.rstrip(b"\r\n"))
        if len(batch) == _STDIN_BATCH:
            failed += _write_vectors(batch, batch_size)
            batch = []
    if batch:
        failed += _write_vectors(batch, batch_size)
    if failed:
        sys.stderr.write(f'note: {failed} line(s) not embedded (see their "error")\n')
        raise typer.Exit(1)


def _write_vectors(lines: list[bytes], batch_size: int) -> int:
    """One JSON line per input line, in order; returns how many carry an error."""
    from hartonomous.services.embed import embed_texts

    failed = 0
    out = sys.stdout
    for embedded in embed_texts(lines, batch_size=batch_size):
        record: dict[str, object] = {"text": embedded.text, "vector": embedded.vector}
        if embedded.vector is None:
            record["error"] = embedded.error
            failed += 1
        elif embedded.truncated:
            record["truncated"] = True
            sys.stderr.write(
                f"note: a line of {embedded.token_count} word pieces was truncated to "
                f"the model's {embedded.max_tokens}\n"
            )
        out.write(json.dumps(record) + "\n")
    out.flush()
    return failed


def _backfill(ctx: typer.Context, spaces: list[EmbeddingSpace], batch_size: int) -> None:
    from hartonomous.services import open_platform
    from hartonomous.services.embed import backfill_embeddings

    state = cli_context(ctx)
    with open_platform(state.settings()) as platform:
        report = backfill_embeddings(platform, spaces, batch_size=batch_size)
    lines = [
        f"{name}: {report.embedded[name]} embedded, {report.not_embedded[name]} not embeddable, "
        f"{report.unknown_only[name]} only of characters the model does not know"
        for name in report.embedded
    ]
    lines.append(f"search entries written: {report.entries}")
    state.emit(asdict(report), "\n".join(lines))


def search(
    ctx: typer.Context,
    query: Annotated[str | None, typer.Argument(help="Text to search for")] = None,
    *,
    tenant: Annotated[str, typer.Option("--tenant", help="The caller's tenant")],
    k: Annotated[int, typer.Option("-k", help=f"Results wanted (1-{MAX_K})")] = 10,
    mode: Annotated[
        str,
        typer.Option(help="hybrid (meaning and words, fused), semantic (meaning) or lexical"),
    ] = "hybrid",
    like: Annotated[
        Path | None,
        typer.Option("--like", help="Search by example: an image or audio file", dir_okay=False),
    ] = None,
    modality: Annotated[
        str | None,
        typer.Option(help="Only from files of this modality (text, document, image, audio, …)"),
    ] = None,
    source_type: Annotated[str | None, typer.Option(help="Only from this source type")] = None,
    since: Annotated[
        datetime | None, typer.Option(help="Only content held since (ISO date/time, UTC)")
    ] = None,
    until: Annotated[
        datetime | None, typer.Option(help="Only content held before (ISO date/time, UTC)")
    ] = None,
) -> None:
    """Search what the tenant holds (and the public corpus if its plan allows)."""
    from hartonomous.services import open_platform
    from hartonomous.services import search as search_service

    state = cli_context(ctx)
    filters = search_service.search_filters(
        source_modality=modality, source_type=source_type, held_since=since, held_until=until
    )
    example = search_service.example_from_file(like) if like is not None else None
    wanted = search_service.Query(text=query, like=example)
    # Bad input is refused before a database starts.
    search_service.check_search(wanted, k, mode, filters)
    with open_platform(state.settings()) as platform:
        result = search_service.search(platform, tenant, wanted, k, mode=mode, filters=filters)
    if result.query_truncated:
        sys.stderr.write(
            f"note: the query is {result.query_tokens} word pieces; only the first "
            f"{result.max_tokens} were used for its meaning\n"
        )
    for note in result.notes:
        sys.stderr.write(f"note: {note}\n")
    hits = [asdict(hit) for hit in result.hits]
    lines = [
        f"{_score(hit.score)}  {_signals(hit.signals, hit.verbatim):12}  {hit.atom_id[:16]}  "
        f"{shown(hit.modality):8}  {shown(hit.source)}\n        {shown(_preview(hit.text))}"
        for hit in result.hits
    ]
    state.emit(hits, "\n".join(lines) or "(no results)")


def _score(score: float | None) -> str:
    return "     -" if score is None else f"{score:.4f}"


def _signals(signals: Mapping[Signal, int], verbatim: bool) -> str:
    shown = " ".join(f"{name[0].upper()}{rank}" for name, rank in sorted(signals.items()))
    return f"{shown} =" if verbatim else shown


def _preview(value: str | None) -> str:
    if value is None:
        return "(no text)"
    flat = " ".join(value.split())
    return flat if len(flat) <= 160 else flat[:159] + "…"
