"""The search planner: exact scans for small scopes, one iterative HNSW scan otherwise."""

from __future__ import annotations

import pytest

from hartonomous.search.planner import (
    HNSW_MAX_EF_SEARCH,
    Method,
    PlannerSettings,
    ef_search_for,
    plan_search,
)

SETTINGS = PlannerSettings(exact_limit=1000, ef_search=40)


def test_small_scopes_are_scanned_exactly() -> None:
    assert plan_search(10, 0, SETTINGS) is Method.EXACT
    assert plan_search(10, 1000, SETTINGS) is Method.EXACT


def test_large_scopes_use_the_index() -> None:
    assert plan_search(10, 1001, SETTINGS) is Method.HNSW


def test_ef_search_is_at_least_the_rows_asked_for() -> None:
    assert ef_search_for(10, SETTINGS) == 40
    assert ef_search_for(100, SETTINGS) == 100
    assert ef_search_for(100, PlannerSettings(ef_search=HNSW_MAX_EF_SEARCH)) == HNSW_MAX_EF_SEARCH


@pytest.mark.parametrize("k", [0, 101, -1])
def test_k_out_of_range_is_refused(k: int) -> None:
    with pytest.raises(ValueError, match=r"k must be in 1\.\.100"):
        plan_search(k, 10, SETTINGS)


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="ef_search"):
        PlannerSettings(ef_search=1001)
    with pytest.raises(ValueError, match="max_scan_tuples"):
        PlannerSettings(max_scan_tuples=0)
    with pytest.raises(ValueError, match="exact_limit"):
        PlannerSettings(exact_limit=-1)
