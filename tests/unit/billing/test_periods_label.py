"""A period's label has four digits of year whatever the year (``%Y`` writes year 1 as "1")."""

from __future__ import annotations

from datetime import date

from hartonomous.billing.periods import period_label


def test_every_year_is_written_with_four_digits() -> None:
    assert period_label(date(1, 1, 1)) == "0001-01"
    assert period_label(date(999, 12, 1)) == "0999-12"
    assert period_label(date(2026, 11, 1)) == "2026-11"
