"""Rounding half away from zero and exact products, checked against integer arithmetic."""

from __future__ import annotations

import random
from decimal import Decimal
from fractions import Fraction

import pytest

from hartonomous.billing.numeric import (
    LedgerValueError,
    exact_product,
    round_half_away,
    to_ledger_numeric,
)

D = Decimal


def oracle_round(numerator: int, scale: int) -> Decimal:
    """numerator / 10**scale rounded to 6 places, ties away from zero, in integers."""
    step = 10 ** (scale - 6)
    quotient, remainder = divmod(abs(numerator), step)
    if 2 * remainder >= step:
        quotient += 1
    return D(-quotient if numerator < 0 else quotient).scaleb(-6)


@pytest.mark.parametrize("seed", range(20))
def test_round_half_away_matches_integer_oracle(seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
    for _ in range(500):
        scale = rng.randint(6, 30)
        numerator = rng.randint(-(10**25), 10**25)
        if rng.random() < 0.3:  # force an exact tie on the 7th decimal
            numerator = (numerator // 10 ** (scale - 6)) * 10 ** (scale - 6)
            numerator += 5 * 10 ** (scale - 7) if scale > 6 else 0
        value = D(numerator).scaleb(-scale)
        assert round_half_away(value) == oracle_round(numerator, scale), value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.0000005", "0.000001"),
        ("-0.0000005", "-0.000001"),
        ("2.5000005", "2.500001"),
        ("0.0000015", "0.000002"),
        ("0.0000025", "0.000003"),
        ("0.00000049999", "0.000000"),
        ("123456789012345678901234567890.1234565", "123456789012345678901234567890.123457"),
    ],
)
def test_round_half_away_examples(value: str, expected: str) -> None:
    rounded = round_half_away(D(value))
    assert rounded == D(expected)
    assert rounded.as_tuple().exponent == -6


def test_rounding_a_six_place_value_is_the_identity() -> None:
    rng = random.Random(7)  # noqa: S311 - reproducible test data, not secrets
    for _ in range(1000):
        value = D(rng.randint(-(10**17), 10**17)).scaleb(-6)
        assert round_half_away(value) == value


@pytest.mark.parametrize("seed", range(5))
def test_exact_product_matches_fractions(seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
    for _ in range(200):
        factors = [D(rng.randint(1, 10**18)).scaleb(-rng.randint(0, 12)) for _ in range(8)]
        expected = Fraction(1)
        for factor in factors:
            expected *= Fraction(factor)
        assert Fraction(exact_product(*factors)) == expected


def test_ledger_numeric_rounds_and_bounds() -> None:
    assert to_ledger_numeric(D("2.5729704"), "multiplier") == D("2.572970")
    assert to_ledger_numeric(D("999999999999.9999994"), "units") == D("999999999999.999999")
    assert str(to_ledger_numeric(D("-0.0000001"), "units")) == "0.000000"
    with pytest.raises(LedgerValueError, match=r"total_dcu 999999999999\.9999995 does not fit"):
        to_ledger_numeric(D("999999999999.9999995"), "total_dcu")
