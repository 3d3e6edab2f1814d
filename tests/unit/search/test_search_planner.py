"""The search planner: exact scans for small scopes, HNSW rounds of growing ef_search."""

from __future__ import annotations

import pytest

from hartonomous.search.planner import (
    HNSW_MAX_EF_SEARCH,
    Method,
    PlannerSettings,
    plan_search,
    round_is_final,
)

SETTINGS = PlannerSettings(exact_limit=5000, first_ef_search=100, growth=4)


def test_small_scopes_are_scanned_exactly() -> None:
    assert plan_search(10, 0, SETTINGS).method is Method.EXACT
    assert plan_search(10, 5000, SETTINGS).method is Method.EXACT


def test_large_scopes_use_hnsw_rounds_up_to_the_ceiling() -> None:
    plan = plan_search(10, 5001, SETTINGS)
    assert plan.method is Method.HNSW
    assert plan.ef_search_rounds == (100, 400, HNSW_MAX_EF_SEARCH)


def test_first_round_is_at_least_k() -> None:
    assert plan_search(100, 10**6, PlannerSettings(first_ef_search=40)).ef_search_rounds[0] == 100


def test_a_round_is_final_with_k_visible_candidates() -> None:
    assert round_is_final(10, 10)
    assert not round_is_final(9, 10)


@pytest.mark.parametrize("k", [0, 101, -1])
def test_k_out_of_range_is_refused(k: int) -> None:
    with pytest.raises(ValueError, match=r"k must be in 1\.\.100"):
        plan_search(k, 10, SETTINGS)


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="first_ef_search"):
        PlannerSettings(first_ef_search=1001)
    with pytest.raises(ValueError, match="growth"):
        PlannerSettings(growth=1)
