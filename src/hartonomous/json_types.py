"""The JSON value type shared by every component that stores or emits JSON.

Numbers that travel through the event pipeline (jsonb and numeric values captured from the
WAL) must arrive exact, so the pipeline reads JSON numbers with a fraction or exponent as
`Decimal` (`exact_loads`) and writes them back verbatim (`exact_dumps`); a binary float would
turn `1.0000000000000000000001` into `1.0`. Integers too long for `int()` (PostgreSQL stores
jsonb `1e5000` as 5,001 digits; Python refuses strings over `sys.get_int_max_str_digits()`)
are read as `Decimal` too. See docs/cdc.md ("Exact values").
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeAlias

import simplejson

JsonValue: TypeAlias = (
    "bool | int | float | Decimal | str | list[JsonValue] | dict[str, JsonValue] | None"
)


def _parse_int(digits: str) -> int | Decimal:
    try:
        return int(digits)
    except ValueError:  # over the int-string digit limit: exact all the same
        return Decimal(digits)


def exact_loads(text: str | bytes) -> Any:
    """Parse JSON text; numbers with a fraction or exponent become `Decimal` (no float loss).

    Integers become `int`, or `Decimal` when longer than Python's int-string limit
    (`sys.get_int_max_str_digits()`, 4,300 digits by default); `exact_dumps` writes either
    back digit for digit. Raises `json.JSONDecodeError` (a `ValueError`) on invalid JSON and
    `RecursionError` on JSON nested deeper than the interpreter's recursion limit.
    """
    return json.loads(text, parse_float=Decimal, parse_int=_parse_int)


def exact_dumps(
    value: object,
    *,
    indent: int | None = None,
    sort_keys: bool = False,
    default: Callable[[Any], Any] | None = None,
) -> str:
    """Compact JSON text with `Decimal`s written verbatim as JSON numbers (RFC 8259).

    Non-ASCII characters are kept as they are. Raises `ValueError` for values JSON cannot
    represent (a float or `Decimal` NaN or infinity, an object that is not JSON data and
    that `default` does not convert).
    """
    try:
        return simplejson.dumps(
            value,
            use_decimal=True,
            allow_nan=False,
            ensure_ascii=False,
            separators=(",", ":") if indent is None else (",", ": "),
            indent=indent,
            sort_keys=sort_keys,
            default=default,
        )
    except TypeError as exc:
        raise ValueError(str(exc)) from None
