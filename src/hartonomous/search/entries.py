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
# root, not into bare chunks and spans (they are bytes, never searchable).
_SEARCHABLE = """
WITH RECURSIVE down(tenant_id, holding_id, atom_id) AS (
    SELECT h.tenant_id, h.holding_id, h.atom_id FROM holdings h WHERE {seed}
    UNION
    SELECT down.tenant_id, down.holding_id, edges.child
    FROM (
        SELECT parent_atom_id AS parent, child_atom_id AS child FROM atom_components
        UNION ALL
        SELECT from_atom_id, to_atom_id FROM atom_relations
    ) AS edges
    JOIN down ON edges.parent = down.atom_id
    JOIN atoms a ON a.atom_id = edges.child
    WHERE a.modality <> 'binary'
)
"""

_WRITE_ENTRIES = (
    _SEARCHABLE
    + """
INSERT INTO search_entries
    (tenant_id, space, atom_id, holding_id, visibility, source_type, source_modality, held_at)
SELECT h.tenant_id, e.space, e.atom_id, h.holding_id, h.visibility, h.source_type,
       root.modality, h.created_at
FROM down
JOIN holdings h ON h.tenant_id = down.tenant_id AND h.holding_id = down.holding_id
JOIN atoms root ON root.atom_id = h.atom_id
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
            + "SELECT DISTINCT ON (a.atom_id) a.atom_id, down.holding_id, a.modality, "
            "a.canonical_text, a.size_bytes "
            "FROM down JOIN atoms a USING (atom_id) "
            "WHERE ((a.modality = 'text' AND a.canonical_text IS NOT NULL) "
            "       OR a.modality IN ('image', 'audio')) "
            "AND NOT EXISTS (SELECT 1 FROM atom_embeddings e WHERE e.atom_id = a.atom_id) "
            "ORDER BY a.atom_id, array_position(CAST(:holding_ids AS uuid[]), down.holding_id)"
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
