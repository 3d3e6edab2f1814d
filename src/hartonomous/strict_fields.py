"""Field types that take from JSON only what their JSON Schema says (docs/api.md, "Errors").

pydantic's lax mode reads ``0``, ``0.5`` or ``"1700000000"`` as a datetime (seconds since the
epoch) and ``12`` or ``0.1`` as a ``Decimal``; a client sending those is served by accident,
and a binary float lost digits before the server saw it. Used by request bodies (api/, and the
service models the API takes as bodies); callers in Python pass ``datetime`` and ``Decimal``.

- ``Timestamp``: an RFC 3339 date-time string with its offset, or a ``datetime``.
- ``Day``: an RFC 3339 full-date string (``2026-01-31``), or a ``date``.
- ``DecimalText``: a decimal written as a JSON string (``"0.02"``), or a ``Decimal``; a JSON
  number is refused (money and factors are NUMERIC(18,6), never binary floating point).
- ``WholeNumber`` (``integral_number``): a JSON integer as JSON Schema 2020-12 (OpenAPI 3.1)
  counts one: ``5``, or an integral number ``5.0`` / ``5e0`` read as 5; ``5.5``, ``1e400``
  (read as infinity), ``true`` or ``"5"`` are refused. Every integer of every body is one
  (tests/unit/api/test_strict_bodies.py walks them); docs/api.md, "Types".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BeforeValidator, StrictInt

__all__ = ["Day", "DecimalText", "Timestamp", "WholeNumber", "integral_number"]

# RFC 3339 `date-time` (what OpenAPI's `format: date-time` means): seconds and an offset are
# required, a fraction is optional; pydantic then parses the string it let through.
_RFC_3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


_FULL_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _text_as(
    written: re.Pattern[str], given: Callable[[Any], bool], expected: str
) -> Callable[[Any], Any]:
    """A before-validator letting through a string ``written`` so, or a value ``given`` from
    Python code; anything else is a ``ValueError`` saying what was ``expected``."""

    def only(value: Any) -> Any:
        if given(value) or (isinstance(value, str) and written.fullmatch(value)):
            return value
        raise ValueError(expected)

    return only


Timestamp = Annotated[
    datetime,
    BeforeValidator(
        _text_as(
            _RFC_3339,
            lambda value: isinstance(value, datetime),
            "expected an RFC 3339 date-time with an offset, such as 2026-01-31T12:00:00Z",
        )
    ),
]
Day = Annotated[
    date,
    BeforeValidator(
        _text_as(
            _FULL_DATE,
            lambda value: isinstance(value, date) and not isinstance(value, datetime),
            "expected an RFC 3339 full-date, such as 2026-01-31",
        )
    ),
]
"""A calendar day as OpenAPI's ``format: date`` means it (``2026-01-31``), nothing else."""


def _decimal_text_only(value: Any) -> Any:
    if isinstance(value, bool | int | float):
        raise ValueError('expected a decimal written as a string, such as "0.02", not a number')
    return value


DecimalText = Annotated[Decimal, BeforeValidator(_decimal_text_only)]


def integral_number(value: Any) -> Any:
    """``43.0`` as ``43`` (JSON Schema counts it an integer); anything else unchanged, so a bool,
    a string, ``43.5`` or infinity stays refused by StrictInt. For a bounded whole number, put
    the bounds beside StrictInt, inside the validator (on ``WholeNumber`` inside a union the
    OpenAPI schema loses them):
    ``Annotated[StrictInt, Field(ge=1), BeforeValidator(integral_number)]``."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


WholeNumber = Annotated[StrictInt, BeforeValidator(integral_number)]
"""A JSON integer as JSON Schema means it: ``43`` or ``43.0``, never ``true`` or ``"43"``."""
