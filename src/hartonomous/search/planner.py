"""How one vector search runs: an exact scan of what the tenant may see, or an HNSW scan.

pgvector ≥ 0.8 scans an HNSW index *iteratively* (`hnsw.iterative_scan`): when the rows the
index yields are filtered out (another tenant's, another modality), it keeps walking the graph
until enough rows pass the filter or `hnsw.max_scan_tuples` index tuples have been visited.
Tenant, modality, source and time filters therefore run inside the index scan
(docs/search.md, "How a search runs").

- **Exact** when the tenant sees at most ``exact_limit`` vectors under the filters (counted,
  cheaply, only up to that limit): their distances are computed one by one; recall is 1 and the
  cost grows with what is visible, not with the space. Measured to win below the limit
  (benchmarks/search.py).
- **HNSW** otherwise: one iterative scan, candidates re-ranked by their exact distance. A scan
  that stops short of the rows asked for (the scan budget ran out, or the graph could not reach
  them) is completed by the exact scan, so a search always returns min(k, visible) rows.
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
    ef_search: int = 40
    """`hnsw.ef_search`: the scan's candidate list (pgvector's default); at least the rows asked."""
    max_scan_tuples: int = 20000
    """`hnsw.max_scan_tuples`: index tuples an iterative scan may visit (pgvector's default)."""

    def __post_init__(self) -> None:
        if self.exact_limit < 0:
            raise ValueError("exact_limit must not be negative")
        if not 1 <= self.ef_search <= HNSW_MAX_EF_SEARCH:
            raise ValueError(f"ef_search must be in 1..{HNSW_MAX_EF_SEARCH}")
        if self.max_scan_tuples < 1:
            raise ValueError("max_scan_tuples must be at least 1")


def plan_search(k: int, visible_up_to_limit: int, settings: PlannerSettings) -> Method:
    """Choose how to find the ``k`` nearest among what the tenant sees.

    ``visible_up_to_limit`` is the number of visible vectors counted up to
    ``settings.exact_limit + 1`` (a larger count means "more than the limit").
    """
    if not 1 <= k <= MAX_K:
        raise ValueError(f"k must be in 1..{MAX_K}, got {k}")
    if visible_up_to_limit <= settings.exact_limit:
        return Method.EXACT
    return Method.HNSW


def ef_search_for(k: int, settings: PlannerSettings) -> int:
    """`hnsw.ef_search` for a scan asked for ``k`` rows: never fewer candidates than rows."""
    return min(max(settings.ef_search, k), HNSW_MAX_EF_SEARCH)
