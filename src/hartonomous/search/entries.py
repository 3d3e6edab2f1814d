"""Search entries: what makes a stored atom findable by a tenant (docs/search.md).

`search_entries` has one row per (tenant, space, embedded atom, holding that reaches it). The
searchable atoms of a holding are found by walking down from its root (components and
derivations; bare chunks and spans are bytes, never searchable): text atoms with canonical
text, image and audio atoms.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text

from hartonomous.db.array_param import BinaryArray
from hartonomous.embed.indexing import EmbeddingCandidate

# The searchable atoms under each seed holding: walk components and derivations down from the
# root, not into bare chunks and spans (they are bytes, never searchable). Each step looks up
# the children of the atoms reached (LATERAL: by the tables' primary keys, which start with the
# parent) and each row carries what the statements below need of its atom (and `seeds` what
# they need of its holding), so that nothing joins `atoms` or `holdings` again after the walk.
# PostgreSQL cannot estimate how many rows a recursive walk gives (it assumed 35,000 for 64
# one-atom holdings): joined as whole tables, every step of the walk hashed all of
# `atom_components` and `atoms` (about 0.9 s for a batch of 64 files among 200,000 atoms, not
# 3 ms), and the statements after it all of `atoms` and `holdings`.
_SEARCHABLE = """
WITH RECURSIVE seeds AS (
    SELECT h.tenant_id, h.holding_id, h.atom_id, h.visibility, h.source_type, h.created_at,
           root.modality, root.size_bytes, root.canonical_text IS NOT NULL AS has_text
    FROM holdings h JOIN atoms root ON root.atom_id = h.atom_id WHERE {seed}
), down(tenant_id, holding_id, atom_id, modality, size_bytes, has_text) AS (
    SELECT tenant_id, holding_id, atom_id, modality, size_bytes, has_text FROM seeds
    UNION
    SELECT down.tenant_id, down.holding_id, edges.child, a.modality, a.size_bytes,
           a.canonical_text IS NOT NULL
    FROM down
    CROSS JOIN LATERAL (
        SELECT child_atom_id AS child FROM atom_components WHERE parent_atom_id = down.atom_id
        UNION ALL
        SELECT to_atom_id FROM atom_relations WHERE from_atom_id = down.atom_id
    ) AS edges
    JOIN atoms a ON a.atom_id = edges.child
    WHERE a.modality <> 'binary'
)
"""

_WRITE_ENTRIES = (
    _SEARCHABLE
    + """
INSERT INTO search_entries
    (tenant_id, space, atom_id, holding_id, visibility, source_type, source_modality, held_at)
SELECT s.tenant_id, e.space, e.atom_id, s.holding_id, s.visibility, s.source_type,
       s.modality, s.created_at
FROM down
JOIN seeds s ON s.tenant_id = down.tenant_id AND s.holding_id = down.holding_id
JOIN atom_embeddings e ON e.atom_id = down.atom_id
ON CONFLICT DO NOTHING
"""
)

_HOLDINGS = "h.tenant_id = :tenant_id AND h.holding_id = ANY(:holding_ids)"


@dataclass(frozen=True)
class SearchableAtom:
    """A searchable atom with no vector yet, and the first holding (in the order asked) that
    reaches it."""

    candidate: EmbeddingCandidate
    holding_id: uuid.UUID


def unembedded_searchable_atoms(
    connection: Connection, tenant_id: str, holding_ids: Sequence[uuid.UUID]
) -> list[SearchableAtom]:
    """The holdings' searchable atoms that have no vector yet (to be embedded before entries).

    An atom reached by several of the holdings is listed once, for the first of them in
    `holding_ids` order.
    """
    if not holding_ids:
        return []
    rows = connection.execute(
        text(
            _SEARCHABLE.format(seed=_HOLDINGS)
            + "SELECT DISTINCT ON (d.atom_id) d.atom_id, d.holding_id, d.modality, "
            "(SELECT a.canonical_text FROM atoms a WHERE a.atom_id = d.atom_id) "
            "AS canonical_text, d.size_bytes "
            "FROM down d "
            "WHERE ((d.modality = 'text' AND d.has_text) OR d.modality IN ('image', 'audio')) "
            "AND NOT EXISTS (SELECT 1 FROM atom_embeddings e WHERE e.atom_id = d.atom_id) "
            "ORDER BY d.atom_id, array_position(CAST(:holding_ids AS uuid[]), d.holding_id)"
        ),
        {"tenant_id": tenant_id, "holding_ids": BinaryArray(holding_ids)},
    ).all()
    return [
        SearchableAtom(
            EmbeddingCandidate(bytes(r.atom_id), r.modality, r.canonical_text, r.size_bytes),
            r.holding_id,
        )
        for r in rows
    ]


def write_holding_entries(
    connection: Connection, tenant_id: str, holding_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, int]:
    """Entries for every embedded atom the holdings reach; how many were new, per holding."""
    written: dict[uuid.UUID, int] = dict.fromkeys(holding_ids, 0)
    if not holding_ids:
        return written
    params: dict[str, Any] = {"tenant_id": tenant_id, "holding_ids": BinaryArray(holding_ids)}
    for holding_id in connection.execute(
        text(_WRITE_ENTRIES.format(seed=_HOLDINGS) + " RETURNING holding_id"), params
    ).scalars():
        written[holding_id] += 1
    return written


def write_all_entries(connection: Connection) -> int:
    """Entries for every holding (idempotent: existing entries are kept); how many were new."""
    return connection.execute(text(_WRITE_ENTRIES.format(seed="true"))).rowcount
