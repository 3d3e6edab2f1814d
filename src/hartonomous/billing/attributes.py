"""Reading strings and numbers out of an event's extension attributes (docs/billing.md).

Attributes arrive as parsed JSON: str, int, float, bool, None, dict and list (a caller that
parses with `parse_float=Decimal` may also hand over Decimal). Keys are matched exactly
(case-sensitive), as the original matched dictionary keys and JSON property names.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation

from hartonomous.billing.numeric import round_half_away

# An object stands for a string through the first of these properties that resolves to one.
STRING_PROPERTIES = ("value", "name", "code", "id", "type")
# The top level plus four nested levels are searched (the original stopped at depth > 4).
MAX_SEARCH_DEPTH = 4
# .NET `decimal` bounds: a number outside them was "not a number" to the original
# (`decimal.TryParse` fails), and keeping them bounds the arithmetic on untrusted input.
DECIMAL_MAX = Decimal(2**96 - 1)
MAX_DECIMAL_PLACES = 28
# `decimal.TryParse(s, NumberStyles.Float, InvariantCulture)`: surrounding white space,
# a sign, ASCII digits with one optional point, an optional exponent; no group separators,
# no NaN/Infinity (Python's Decimal would accept "1_000", "NaN" and "Infinity").
_INVARIANT_FLOAT = re.compile(
    r"[\t\n\v\f\r ]*([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)[\t\n\v\f\r ]*"
)


def _is_blank(text: str) -> bool:
    return not text.strip()


def resolve_string(value: object) -> str | None:
    """A non-blank string, or an object's first `STRING_PROPERTIES` entry that resolves to one.

    The original checked these properties in priority order for dictionaries but in document
    order for JSON objects; parsed JSON is a dict here, so priority order applies to both.
    The search is iterative: attribute nesting comes from untrusted input.
    """
    pending: list[object] = [value]
    while pending:
        current = pending.pop()
        if isinstance(current, str):
            if not _is_blank(current):
                return current
        elif isinstance(current, Mapping):
            # Reversed onto the stack, so "value" is tried (fully) before "name", and so on.
            pending.extend(current[name] for name in reversed(STRING_PROPERTIES) if name in current)
    return None


def find_string(attributes: Mapping[str, object], keys: Iterable[str]) -> str | None:
    """The first string under `keys`: this level first (keys in order), then nested objects.

    Nested objects are visited in insertion order, depth-first, to `MAX_SEARCH_DEPTH`; lists
    are not searched (the original only descended into objects).
    """
    wanted = tuple(keys)
    return _find_string(attributes, wanted, 0)


def _find_string(attributes: Mapping[str, object], keys: tuple[str, ...], depth: int) -> str | None:
    if depth > MAX_SEARCH_DEPTH:
        return None
    for key in keys:
        if key in attributes:
            found = resolve_string(attributes[key])
            if found is not None:
                return found
    for nested in attributes.values():
        if isinstance(nested, Mapping):
            found = _find_string(nested, keys, depth + 1)
            if found is not None:
                return found
    return None


def to_decimal(value: object) -> Decimal | None:
    """A JSON number, Decimal or invariant-culture numeric string as Decimal; else None.

    Floats go through `str` (their shortest round-trip form), never binary arithmetic.
    Booleans are not numbers (JSON true/false are not).
    """
    number = _parse_number(value)
    if number is None or not number.is_finite() or number.copy_abs() > DECIMAL_MAX:
        return None
    # .NET `decimal` keeps at most 28 decimal places; more would only let untrusted input
    # inflate the exact arithmetic (and the metadata text) without changing a 6-place total.
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_DECIMAL_PLACES:
        return round_half_away(number, MAX_DECIMAL_PLACES)
    return number


def _parse_number(value: object) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | Decimal):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(str(value)) if math.isfinite(value) else None
    match = _INVARIANT_FLOAT.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        return None
    try:
        return Decimal(match.group(1))
    except InvalidOperation:  # an exponent beyond what Decimal can represent
        return None


def nested_number(container: object, key: str) -> Decimal | None:
    """`container[key]` as a number when `container` is an object."""
    if isinstance(container, Mapping) and key in container:
        return to_decimal(container[key])
    return None
