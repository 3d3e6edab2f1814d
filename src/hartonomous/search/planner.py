"""How one search runs: an exact scan of what the tenant may see, or HNSW rounds.

pgvector 0.6 filters *after* the index scan: an HNSW scan returns at most ``hnsw.ef_search``
nearest vectors of the whole space, and only then are the tenant's kept. A tenant that sees 1%
of a space would keep about 1% of them, so the index alone cannot serve it.

- **Exact** when the tenant sees at most ``exact_limit`` vectors (counted, cheaply, only up to
  that limit): their distances are computed one by one; recall is 1 by construction and the
  cost grows with the tenant's share, not with the space.
- **HNSW** otherwise, in rounds of growing ``ef_search``. A round whose candidates hold at least
  ``k`` visible vectors is final: any visible vector nearer than the k-th found would have been
  among the candidates (the candidates are the space's nearest, as far as HNSW finds them), so
  the answer is as good as HNSW's own recall. A round short of ``k`` visible ones widens;
  past pgvector's ``ef_search`` ceiling the search falls back to the exact scan.

Candidates are re-ranked by their exact distance before the top ``k`` are returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

MAX_K = 100
HNSW_MAX_EF_SEARCH = 1000  # pgvector's upper bound for hnsw.ef_search


class Method(StrEnum):
    EXACT = "exact"
    HNSW = "hnsw"


@dataclass(frozen=True)
class PlannerSettings:
    exact_limit: int = 2000
    """Largest number of visible vectors scanned exactly (measured: benchmarks/search.py)."""
    first_ef_search: int = 64
    """ef_search of the first HNSW round; later rounds multiply it by ``growth``."""
    growth: int = 4

    def __post_init__(self) -> None:
        if self.exact_limit < 0:
            raise ValueError("exact_limit must not be negative")
        if not 1 <= self.first_ef_search <= HNSW_MAX_EF_SEARCH:
            raise ValueError(f"first_ef_search must be in 1..{HNSW_MAX_EF_SEARCH}")
        if self.growth < 2:
            raise ValueError("growth must be at least 2")


@dataclass(frozen=True)
class Plan:
    method: Method
    ef_search_rounds: tuple[int, ...] = ()
    """For HNSW: ef_search of each round, in order (empty for an exact scan)."""


def plan_search(k: int, visible_up_to_limit: int, settings: PlannerSettings) -> Plan:
    """Choose how to find the ``k`` nearest among what the tenant sees.

    ``visible_up_to_limit`` is the number of visible vectors counted up to
    ``settings.exact_limit + 1`` (a larger count means "more than the limit").
    """
    if not 1 <= k <= MAX_K:
        raise ValueError(f"k must be in 1..{MAX_K}, got {k}")
    if visible_up_to_limit <= settings.exact_limit:
        return Plan(Method.EXACT)
    return Plan(Method.HNSW, ef_search_rounds(k, settings))


def ef_search_rounds(k: int, settings: PlannerSettings) -> tuple[int, ...]:
    ef = max(settings.first_ef_search, k)
    rounds = [min(ef, HNSW_MAX_EF_SEARCH)]
    while rounds[-1] < HNSW_MAX_EF_SEARCH:
        rounds.append(min(rounds[-1] * settings.growth, HNSW_MAX_EF_SEARCH))
    return tuple(rounds)


def round_is_final(visible_found: int, k: int) -> bool:
    """True when a round's candidates hold enough visible vectors to answer exactly."""
    return visible_found >= k
