"""Exact JSON: numbers read and written back digit for digit."""

from __future__ import annotations

import sys
from decimal import Decimal

from hartonomous.json_types import exact_dumps, exact_loads


def test_integers_over_pythons_digit_limit_read_as_decimal_and_write_back_verbatim() -> None:
    limit = sys.get_int_max_str_digits()
    long_positive = "1" + "0" * 5000  # how PostgreSQL stores jsonb 1e5000
    long_negative = "-" + "9" * (limit + 1)
    text = f'{{"n":{long_positive},"a":[{long_negative},{"7" * limit}],"small":-12}}'
    value = exact_loads(text)
    assert value["n"] == Decimal(long_positive)
    assert value["a"][0] == Decimal(long_negative)
    assert value["a"][1] == int("7" * limit)  # at the limit: still an int
    assert type(value["small"]) is int
    assert exact_dumps(value) == text
