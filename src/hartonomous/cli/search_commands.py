"""`hartonomous embed` (stdin text -> JSON lines; `--backfill`) and `hartonomous search`."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from hartonomous.cli.context import cli_context, shown
from hartonomous.cli.errors import CommandUsageError
from hartonomous.embed.spaces import SPACES, TEXT_SPACE, get_space
from hartonomous.search.fusion import Signal
from hartonomous.search.planner import MAX_K

if TYPE_CHECKING:
    from hartonomous.embed.text_model import MiniLMTextEmbedder

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
    from hartonomous.embed.indexing import shared_text_embedder

    model = shared_text_embedder()
    failed = 0
    batch: list[bytes] = []
    # Bytes, not text: a line that is not UTF-8 is that line's error, not the whole run's.
    for line in sys.stdin.buffer:
        batch.append(line.rstrip(b"\r\n"))
        if len(batch) == _STDIN_BATCH:
            failed += _write_vectors(model, batch, batch_size)
            batch = []
    if batch:
        failed += _write_vectors(model, batch, batch_size)
    if failed:
        sys.stderr.write(f'note: {failed} line(s) not embedded (see their "error")\n')
        raise typer.Exit(1)


def _write_vectors(model: MiniLMTextEmbedder, lines: list[bytes], batch_size: int) -> int:
    """One JSON line per input line, in order; returns how many carry an error."""
    from hartonomous.embed.indexing import UNEMBEDDABLE_REASONS

    texts: list[str] = []
    errors: list[str | None] = []
    for raw in lines:
        try:
            texts.append(raw.decode("utf-8"))
            errors.append(None)
        except UnicodeDecodeError as exc:
            texts.append(raw.decode("utf-8", errors="replace"))
            errors.append(f"not UTF-8: byte 0x{raw[exc.start]:02x} at offset {exc.start}")
    wanted = [index for index, error in enumerate(errors) if error is None]
    for index, ok in zip(wanted, model.embeddable([texts[i] for i in wanted]), strict=True):
        if not ok:
            errors[index] = UNEMBEDDABLE_REASONS["no_word_pieces"]
    usable = [index for index, error in enumerate(errors) if error is None]
    encoded = model.encode([texts[i] for i in usable], batch_size=min(batch_size, 256))
    results: dict[int, int] = {}
    for position, index in enumerate(usable):
        # Only [UNK] word pieces: every such text gets nearly the same vector (cosine ~1).
        if encoded.unknown_only[position]:
            errors[index] = UNEMBEDDABLE_REASONS["unknown_word_pieces_only"]
        else:
            results[index] = position
    out = sys.stdout
    for index, value in enumerate(texts):
        row = results.get(index)
        record: dict[str, object] = {"text": value, "vector": None}
        if row is None:
            record["error"] = errors[index]
        else:
            record["vector"] = [float(x) for x in encoded.vectors[row]]
            if encoded.truncated[row]:
                record["truncated"] = True
                sys.stderr.write(
                    f"note: a line of {encoded.token_counts[row]} word pieces was truncated to "
                    f"the model's {encoded.max_tokens}\n"
                )
        out.write(json.dumps(record) + "\n")
    out.flush()
    return len(lines) - len(results)


def _backfill(ctx: typer.Context, spaces: list[object], batch_size: int) -> None:
    from hartonomous.db import open_database
    from hartonomous.embed.spaces import EmbeddingSpace
    from hartonomous.ingest.indexing import backfill

    state = cli_context(ctx)
    chosen = [space for space in spaces if isinstance(space, EmbeddingSpace)]
    with open_database(state.settings()) as database:
        report = backfill(database.engine, chosen, batch_size=batch_size)
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
    from hartonomous.db import open_database
    from hartonomous.ingest.examples import read_example
    from hartonomous.search.query import Filters
    from hartonomous.search.service import Query, validate
    from hartonomous.search.service import search as run_search

    state = cli_context(ctx)
    filters = Filters(
        source_type=source_type,
        source_modality=modality,
        held_since=_utc(since),
        held_until=_utc(until),
    )
    example = read_example(like) if like is not None else None
    wanted = Query(text=query, like=example)
    chosen = validate(wanted, k, mode, filters)  # bad input is refused before a database starts
    with open_database(state.settings()) as database:
        result = run_search(
            database.engine,
            tenant,
            wanted,
            k,
            mode=chosen,
            filters=filters,
        )
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


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _preview(value: str | None) -> str:
    if value is None:
        return "(no text)"
    flat = " ".join(value.split())
    return flat if len(flat) <= 160 else flat[:159] + "…"
