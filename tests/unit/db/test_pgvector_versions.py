"""Which pgvector versions the migrations accept (the message is checked on real servers)."""

from __future__ import annotations

from hartonomous.db.connection import pgvector_version_problem


def test_recent_enough_or_absent_is_no_problem() -> None:
    assert pgvector_version_problem("0.8.0", None) is None
    assert pgvector_version_problem("0.8.6", "0.8.6") is None
    assert pgvector_version_problem(None, "0.10.1") is None
    assert pgvector_version_problem("1.0.0", None) is None
    assert pgvector_version_problem(None, None) is None


def test_older_names_installed_or_offered_and_required() -> None:
    installed = pgvector_version_problem("0.7.4", "0.8.6")
    assert installed is not None
    assert installed.startswith("pgvector 0.7.4 is installed in the database")
    assert "needs >= 0.8" in installed
    offered = pgvector_version_problem(None, "0.6.2")
    assert offered is not None
    assert offered.startswith("the server offers pgvector 0.6.2")
    # Numeric, not textual, comparison: 0.10 is newer than 0.8; a dev suffix keeps its number.
    assert pgvector_version_problem("0.10.0", None) is None
    assert pgvector_version_problem("0.7.0-dev", None) is not None
