"""Numbers and strings as the meter reads them from JSON-shaped attributes."""

from __future__ import annotations

from decimal import Decimal

import pytest

from hartonomous.billing.attributes import find_string, resolve_string, to_decimal

D = Decimal


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3, D(3)),
        (0.1, D("0.1")),
        (1e20, D("1E+20")),
        (D("2.50"), D("2.50")),
        ("12.5", D("12.5")),
        (" \t-4.25\n", D("-4.25")),
        ("+.5", D("0.5")),
        ("5.", D(5)),
        ("1e3", D(1000)),
        ("2.5E-2", D("0.025")),
        ("79228162514264337593543950335", D(2**96 - 1)),
        # More than 28 decimal places is rounded to 28, as .NET decimal would hold it.
        ("1e-40", D(0)),
        ("0.12345678901234567890123456785", D("0.1234567890123456789012345679")),
    ],
)
def test_numbers(value: object, expected: Decimal) -> None:
    assert to_decimal(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        "",
        "  ",
        "abc",
        "1,000",
        "1_000",
        "NaN",
        "Infinity",
        "-inf",
        "0x10",
        "١٢",  # non-ASCII digits
        "1e",
        ".",
        "1e99999999999999999999",
        "79228162514264337593543950336",
        2**96,
        float("nan"),
        float("inf"),
        D("NaN"),
        [1],
        {"value": 1},
    ],
)
def test_not_numbers(value: object) -> None:
    assert to_decimal(value) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("text", "text"),
        (" text ", " text "),
        ("   ", None),
        ({"value": "a", "name": "b"}, "a"),
        ({"type": "e", "id": "d", "code": "c", "name": "b"}, "b"),
        ({"value": {"value": ""}, "name": "b"}, "b"),
        ({"other": "x"}, None),
        (["x"], None),
        (5, None),
        (None, None),
    ],
)
def test_string_resolution(value: object, expected: str | None) -> None:
    assert resolve_string(value) == expected


def test_find_string_prefers_earlier_keys_at_one_level() -> None:
    attributes: dict[str, object] = {"b": "second", "a": "first"}
    assert find_string(attributes, ("a", "b")) == "first"
    assert find_string(attributes, ("c",)) is None
