"""Making what a holding brings findable: vectors (`embed`), then entries and links (`search`).

At ingestion (`HoldingIndexer.index_holdings`, in the transaction that stores a batch of files,
after their holdings are made):
1. the holding's searchable atoms without a vector are found (`search.entries`);
2. they are embedded in batches (`embed.indexing`): dedup saves model time, since an atom
   already stored already has its vector;
3. with a near-duplicate policy, each newly embedded text atom is linked `similar_to` its
   nearest visible neighbour when similar enough (`search.similar`);
4. the holding's search entries are written (one per embedded atom it reaches).

`backfill` embeds what is missing (atoms stored before this existed, or whose embedding failed)
in committed batches, then writes the search entries of every holding. Both are idempotent.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine

from hartonomous.embed.indexing import (
    Embedders,
    embed_candidates,
    referenced_without_vector,
    store_vectors,
)
from hartonomous.embed.spaces import SPACES, EmbeddingSpace
from hartonomous.search.entries import (
    unembedded_searchable_atoms,
    write_all_entries,
    write_holding_entries,
)
from hartonomous.search.query import Scope
from hartonomous.search.scope import can_query_public_corpus
from hartonomous.search.similar import DedupPolicy, SimilarLink, link_similar, resolve_policy


@dataclass
class IndexReport:
    embedded: int = 0
    entries: int = 0
    not_embedded: int = 0
    unknown_only: int = 0
    """Texts made only of word pieces the model does not know: stored, not embedded."""
    similar: list[SimilarLink] = field(default_factory=list)


class HoldingIndexer:
    """Indexes every holding of one ingestion job (one tenant, one policy)."""

    def __init__(self, embedders: Embedders, policy: DedupPolicy, include_public: bool) -> None:
        self.embedders = embedders
        self.policy = policy
        self.include_public = include_public

    @classmethod
    def for_job(
        cls, engine: Engine, tenant_id: str, policy_name: str, embedders: Embedders | None = None
    ) -> HoldingIndexer:
        with engine.connect() as connection:
            policy = resolve_policy(connection, policy_name)
            include_public = can_query_public_corpus(connection, tenant_id)
        return cls(embedders or Embedders(), policy, include_public)

    def index_holdings(
        self,
        connection: Connection,
        tenant_id: str,
        holding_ids: Sequence[uuid.UUID],
        job_id: uuid.UUID,
    ) -> dict[uuid.UUID, IndexReport]:
        """Index several holdings of one job at once (one embedding pass for all their atoms).

        An atom reached by several holdings is embedded once and counted for the first of them
        in `holding_ids` order.
        """
        reports = {holding_id: IndexReport() for holding_id in holding_ids}
        searchable = unembedded_searchable_atoms(connection, tenant_id, holding_ids)
        owner = {atom.candidate.atom_id: atom.holding_id for atom in searchable}
        embedded = embed_candidates(connection, self.embedders, [a.candidate for a in searchable])
        created = store_vectors(connection, embedded.vectors)
        for atom_id, holding_id in owner.items():
            report = reports[holding_id]
            if atom_id in created:
                report.embedded += 1
            elif atom_id in embedded.unknown_only_atoms:
                report.unknown_only += 1
            elif atom_id not in embedded.vectors:
                report.not_embedded += 1
        links = link_similar(
            connection,
            self.policy,
            Scope(tenant_id, self.include_public),
            job_id,
            {atom_id: embedded.vectors[atom_id] for atom_id in created},
        )
        for link in links:
            reports[owner[bytes.fromhex(link.atom_id)]].similar.append(link)
        for holding_id, entries in write_holding_entries(
            connection, tenant_id, holding_ids
        ).items():
            reports[holding_id].entries += entries
        return reports


@dataclass
class BackfillReport:
    embedded: dict[str, int] = field(default_factory=dict)
    not_embedded: dict[str, int] = field(default_factory=dict)
    unknown_only: dict[str, int] = field(default_factory=dict)
    entries: int = 0


def backfill(
    engine: Engine,
    spaces: Sequence[EmbeddingSpace] = SPACES,
    *,
    embedders: Embedders | None = None,
    batch_size: int = 256,
    on_batch: Callable[[str, int], None] | None = None,
) -> BackfillReport:
    """Embed every referenced atom that lacks a vector in ``spaces``, then write search entries.

    Each batch commits on its own, so an interrupted backfill keeps what it did. Atoms that
    cannot be embedded are counted and skipped (keyset pagination never revisits them).
    """
    embedders = embedders or Embedders()
    report = BackfillReport()
    for space in spaces:
        report.embedded[space.name] = report.not_embedded[space.name] = 0
        report.unknown_only[space.name] = 0
        after = b""
        while True:
            with engine.begin() as connection:
                candidates = referenced_without_vector(connection, space, after, batch_size)
                if not candidates:
                    break
                after = candidates[-1].atom_id
                embedded = embed_candidates(connection, embedders, candidates)
                created = store_vectors(connection, embedded.vectors)
            report.embedded[space.name] += len(created)
            report.not_embedded[space.name] += embedded.failed
            report.unknown_only[space.name] += embedded.unknown_only
            if on_batch is not None:
                on_batch(space.name, len(created))
    with engine.begin() as connection:
        report.entries = write_all_entries(connection)
    return report
