"""Field types for request parameters and bodies that accept only what the OpenAPI says.

pydantic's lax mode reads `0`, `0.5` or `"1700000000"` as a datetime (seconds since the epoch)
and `true` or `"5"` as an integer; the OpenAPI document still says `date-time` and `integer`, so
a client that sends such values is served by accident, and schemathesis' `negative_data_rejection`
check reports the route (docs/development.md, API tests). Declare request fields with these:

- ``Timestamp`` (strict_fields.py): an RFC 3339 date-time string with its offset (or a
  ``datetime`` from Python code); anything else, a number or a date alone included, is a 422
  naming the field.
- ``AtomId``: a path segment naming an atom or a model file (64 hex characters); anything else
  is a 422 naming the parameter, like every other malformed parameter.
- ``TenantId`` / ``PrincipalId`` / ``KeyId`` (path) and ``TenantIdQuery`` (query): the shapes the
  tables hold (db/tables/base.py, security/principals.py, security/api_keys.py). The rule of
  every route (docs/api.md, "Errors"): a value that is not shaped like an id is a 422
  ``invalid-request`` naming the parameter; a well-formed id that names nothing the caller may
  see (another tenant's included) is a 404.
- ``Period``: a month, ``YYYY-MM`` with a month 01-12.
- ``Day``: an RFC 3339 full-date (``2026-01-31``) only.
- ``ASCII_INTEGER``: an integer in a query parameter, a path segment or a form field (text by
  nature): ``-?[0-9]+`` in ASCII digits only; ``+5``, ``1_0``, `` 5``, ``0x10``,
  ``5.0`` or Arabic-Indic digits, which Python's ``int()`` and pydantic's lax mode read, are a
  422 naming the parameter (tests/unit/api/test_strict_bodies.py walks every route's).
- ``StrictInt`` / ``StrictFloat`` / ``StrictBool`` / ``StrictStr`` (re-exported from pydantic)
  for JSON bodies: a string is not a number, a number is not a string, a bool is not an
  integer (tests/unit/api/test_strict_bodies.py walks every body); query parameters arrive as
  text and are parsed (``?limit=5``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import BeforeValidator, StrictBool, StrictFloat, StrictInt, StrictStr

from hartonomous.db.tables.base import TENANT_ID_LENGTH, TENANT_ID_PATTERN
from hartonomous.security.api_keys import KEY_ID_PATTERN
from hartonomous.security.principals import PRINCIPAL_ID_LENGTH
from hartonomous.strict_fields import Day, Timestamp, WholeNumber, integral_number

__all__ = [
    "ASCII_INTEGER",
    "PERIOD_PATTERN",
    "AtomId",
    "Day",
    "KeyId",
    "Period",
    "PrincipalId",
    "StrictBool",
    "StrictFloat",
    "StrictInt",
    "StrictStr",
    "TenantId",
    "TenantIdQuery",
    "Timestamp",
    "WholeNumber",
    "integer_text",
    "integral_number",
]

AtomId = Annotated[
    str,
    Path(
        pattern="^[0-9a-fA-F]{64}$",
        description="An atom id: the SHA-256 of the atom's bytes, 64 hex characters",
    ),
]

_TENANT_ID = {
    "pattern": TENANT_ID_PATTERN,
    "max_length": TENANT_ID_LENGTH,
    "description": "A tenant id: 1-64 letters, digits, '.', '_' or '-', from a letter or digit",
}
TenantId = Annotated[str, Path(**_TENANT_ID)]
TenantIdQuery = Annotated[str | None, Query(**_TENANT_ID)]
PrincipalId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=PRINCIPAL_ID_LENGTH,
        description=f"A principal id: 1-{PRINCIPAL_ID_LENGTH} characters",
    ),
]
KeyId = Annotated[
    str,
    Path(
        pattern=f"^{KEY_ID_PATTERN.pattern}$",
        description="A key id: 16 hexadecimal digits (the part of a token after `hk_`)",
    ),
]
PERIOD_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"
Period = Annotated[str, Path(pattern=PERIOD_PATTERN, description="A month: YYYY-MM")]


_INTEGER_TEXT = re.compile(r"-?[0-9]+")


def integer_text(value: Any) -> Any:
    """A text integer as the OpenAPI ``integer`` of a parameter means it: ``-?[0-9]+``, else a
    ``ValueError`` (a 422 naming the parameter); a value that is not text passes unchanged."""
    if isinstance(value, str) and not _INTEGER_TEXT.fullmatch(value):
        raise ValueError("expected an integer in ASCII digits, such as 5 (no sign +, _, or space)")
    return value


ASCII_INTEGER = BeforeValidator(integer_text)
"""Beside the bounds of an integer query, path or form parameter, ``5`` or ``-5`` only:
``Annotated[int, Query(ge=1, le=500), ASCII_INTEGER]`` (outside them, as in a type alias of
its own, the OpenAPI schema would lose the bounds as unknown keys)."""
