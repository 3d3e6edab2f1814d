"""ScopeSizes forgets expired scopes instead of keeping every filter value it was given."""

from __future__ import annotations

from unittest import mock

from sqlalchemy import create_engine

from hartonomous.search import scope


def test_expired_scopes_are_dropped_and_fresh_ones_kept() -> None:
    engine = create_engine("postgresql+psycopg://nobody@localhost/nothing")
    sizes = scope.ScopeSizes()
    with mock.patch.object(scope.time, "monotonic", return_value=1000.0):
        for key in range(scope._PRUNE_AT):
            sizes.remember(engine, key, large=True)
        assert sizes.is_large(engine, 0)
    later = 1000.0 + scope.LARGE_SCOPE_SECONDS + 1
    with mock.patch.object(scope.time, "monotonic", return_value=later):
        sizes.remember(engine, "fresh", large=True)
        assert not sizes.is_large(engine, 0)
        assert sizes.is_large(engine, "fresh")
        assert len(sizes._counted[engine]) == 1
