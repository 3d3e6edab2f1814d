"""Near-duplicate links (the original's `DeduplicationPolicy`; docs/search.md).

A policy with a `semantic_threshold` links each newly embedded text atom `similar_to` its
nearest neighbour among what the tenant can see, when at least that similar (cosine). Links are
tenant-scoped rows of `atom_similarities`, never global `atom_relations` edges.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import Connection, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from hartonomous.db.tables import atom_similarities, deduplication_policies
from hartonomous.embed.indexing import AtomVectors
from hartonomous.errors import UsageError
from hartonomous.search.query import Filters, Scope, search_vector


class UnknownPolicyError(UsageError, LookupError):
    """No deduplication policy of that name."""


@dataclass(frozen=True)
class DedupPolicy:
    name: str
    semantic_threshold: float | None


@dataclass(frozen=True)
class SimilarLink:
    atom_id: str
    similar_to: str
    similarity: float


def resolve_policy(connection: Connection, name: str) -> DedupPolicy:
    """The named policy; UnknownPolicyError naming the known ones otherwise."""
    row = connection.execute(
        select(deduplication_policies.c.semantic_threshold).where(
            deduplication_policies.c.policy_name == name
        )
    ).one_or_none()
    if row is None:
        known = connection.execute(
            select(deduplication_policies.c.policy_name).order_by("policy_name")
        ).scalars()
        raise UnknownPolicyError(
            f"unknown deduplication policy {name!r} (known: {', '.join(known)})"
        )
    return DedupPolicy(name, row.semantic_threshold)


def link_similar(
    connection: Connection,
    policy: DedupPolicy,
    scope: Scope,
    job_id: uuid.UUID,
    created: AtomVectors,
) -> list[SimilarLink]:
    """Link each new text atom to its nearest visible neighbour when similar enough."""
    threshold = policy.semantic_threshold
    if threshold is None:
        return []
    links: list[SimilarLink] = []
    for atom_id, (space, vector) in sorted(created.items()):
        if space.modality != "text":
            continue
        found = search_vector(
            connection, space, vector, 1, scope, filters=Filters(exclude_atom=atom_id)
        ).neighbours
        if not found or found[0].score < threshold:
            continue
        nearest = found[0]
        connection.execute(
            pg_insert(atom_similarities)
            .values(
                tenant_id=scope.tenant_id,
                atom_id=atom_id,
                similar_atom_id=nearest.atom_id,
                space=space.name,
                similarity=nearest.score,
                policy_name=policy.name,
                job_id=job_id,
            )
            .on_conflict_do_nothing()
        )
        links.append(SimilarLink(atom_id.hex(), nearest.atom_id.hex(), nearest.score))
    return links
