"""Reciprocal rank fusion of the semantic and lexical result lists (docs/search.md).

Each list votes ``1 / (RRF_K + rank)`` (rank from 1) for each atom it holds; atoms are ordered by
the sum (Cormack, Clarke and Büttcher, SIGIR 2009, with their k = 60). An atom whose whole text
is the query (a verbatim lexical match) comes first whatever the votes, in the lexical list's
order: a stored sentence searched word for word is what the user meant, even when the vector
index cannot reach it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

Signal = Literal["semantic", "lexical"]

RRF_K = 60


@dataclass
class Fused:
    atom_id: bytes
    score: float = 0.0
    """Sum of the signals' votes."""
    ranks: dict[Signal, int] = field(default_factory=dict)
    """Rank (from 1) of the atom in each signal's list that holds it."""
    verbatim: bool = False


def fuse(
    semantic: Sequence[bytes], lexical: Sequence[bytes], verbatim: set[bytes], k: int
) -> list[Fused]:
    """The ``k`` best atoms of both lists: verbatim matches (in the lexical list's order), then
    the others by summed votes (ties in the order the lists gave them)."""
    fused: dict[bytes, Fused] = {}
    lists: tuple[tuple[Signal, Sequence[bytes]], ...] = (
        ("semantic", semantic),
        ("lexical", lexical),
    )
    for signal, ranked in lists:
        for rank, atom_id in enumerate(ranked, start=1):
            entry = fused.setdefault(atom_id, Fused(atom_id))
            entry.score += 1.0 / (RRF_K + rank)
            entry.ranks[signal] = rank
    for atom_id in verbatim:
        if atom_id in fused:
            fused[atom_id].verbatim = True
    # Verbatim matches keep the lexical order among themselves (the identical text first).
    ordered = sorted(
        fused.values(),
        key=lambda f: (not f.verbatim, f.ranks.get("lexical", 0) if f.verbatim else 0, -f.score),
    )
    return ordered[:k]
