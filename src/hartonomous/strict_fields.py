"""Field types that take from JSON only what their JSON Schema says (docs/api.md, "Errors").

pydantic's lax mode reads ``0``, ``0.5`` or ``"1700000000"`` as a datetime (seconds since the
epoch) and ``12`` or ``0.1`` as a ``Decimal``; a client sending those is served by accident,
and a binary float lost digits before the server saw it. Used by request bodies (api/, and the
service models the API takes as bodies); callers in Python pass ``datetime`` and ``Decimal``.

- ``Timestamp``: an RFC 3339 date-time string with its offset, or a ``datetime``.
- ``DecimalText``: a decimal written as a JSON string (``"0.02"``), or a ``Decimal``; a JSON
  number is refused (money and factors are NUMERIC(18,6), never binary floating point).
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BeforeValidator

__all__ = ["DecimalText", "Timestamp"]

# RFC 3339 `date-time` (what OpenAPI's `format: date-time` means): seconds and an offset are
# required, a fraction is optional; pydantic then parses the string it let through.
_RFC_3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def _iso_8601_only(value: Any) -> Any:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and _RFC_3339.fullmatch(value):
        return value
    raise ValueError("expected an RFC 3339 date-time with an offset, such as 2026-01-31T12:00:00Z")


Timestamp = Annotated[datetime, BeforeValidator(_iso_8601_only)]


def _decimal_text_only(value: Any) -> Any:
    if isinstance(value, bool | int | float):
        raise ValueError('expected a decimal written as a string, such as "0.02", not a number')
    return value


DecimalText = Annotated[Decimal, BeforeValidator(_decimal_text_only)]
