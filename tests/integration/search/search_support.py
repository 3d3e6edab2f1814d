"""Shared helpers for the search tests: a real corpus, tenants with plans, searching."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import Engine, insert

from hartonomous.db.tables import billing_rate_plans
from hartonomous.search.query import Filters
from hartonomous.search.service import Query, SearchResult, search

SENTENCES_FILE = Path(__file__).parents[2] / "data" / "minilm" / "sentences.json"


def sentences() -> list[str]:
    loaded: list[str] = json.loads(SENTENCES_FILE.read_text(encoding="utf-8"))
    return [" ".join(sentence.split()) for sentence in loaded]


def write_corpus(folder: Path, texts: list[str], per_file: int = 20) -> list[Path]:
    """Text files of ``per_file`` paragraphs each: every sentence becomes one paragraph atom."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for start in range(0, len(texts), per_file):
        path = folder / f"part-{start // per_file:03}.txt"
        path.write_text("\n\n".join(texts[start : start + per_file]) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def give_plan(engine: Engine, tenant_id: str | None, *, can_query_public_corpus: bool) -> None:
    with engine.begin() as connection:
        connection.execute(
            insert(billing_rate_plans).values(
                tenant_id=tenant_id,
                name=f"plan of {tenant_id or 'everyone'}",
                can_query_public_corpus=can_query_public_corpus,
            )
        )


def find(
    engine: Engine, tenant_id: str, query: str, k: int = 10, filters: Filters | None = None
) -> SearchResult:
    return search(engine, tenant_id, Query(text=query), k, filters=filters)


def texts_found(result: SearchResult) -> list[str | None]:
    return [hit.text.strip() if hit.text else None for hit in result.hits]
