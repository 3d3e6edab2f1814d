"""Typed reads of a CDC row (`data` of a CloudEvent); a wrong type names the column and value."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping

from hartonomous.json_types import JsonValue

_DIGEST_HEX = re.compile(r"^[0-9a-f]{64}$")
TEXT_PREVIEW_CHARACTERS = 2000


class InvalidEventError(ValueError):
    """The event cannot be handled as it is; the message says what is wrong (dead letter)."""


class Row:
    """One changed row as the CES consumer wrote it (bytea as hex, uuid as text).

    A column can be absent: an UPDATE that left a TOASTed value unchanged does not carry it
    (pgoutput's "unchanged" marker; docs/cdc.md), and a delete carries only the key. Absent
    means "keep what is stored": graph properties come from `pick` / `pick_as`, which leave
    absent columns out, while a present NULL is a value (the property becomes null).
    """

    def __init__(self, where: str, data: object) -> None:
        if not isinstance(data, Mapping):
            raise InvalidEventError(f"{where}: data is {type(data).__name__}, not a JSON object")
        self.where = where
        self.data: Mapping[str, JsonValue] = data

    def _bad(self, column: str, expected: str) -> InvalidEventError:
        value = repr(self.data.get(column))[:80]
        return InvalidEventError(f"{self.where}: column {column} is {value}, expected {expected}")

    def has(self, column: str) -> bool:
        return self.data.get(column) is not None

    def digest(self, column: str) -> str:
        value = self.data.get(column)
        if not isinstance(value, str) or not _DIGEST_HEX.match(value):
            raise self._bad(column, "a SHA-256 digest in hex")
        return value

    def optional_digest(self, column: str) -> str | None:
        return self.digest(column) if self.has(column) else None

    def text(self, column: str) -> str:
        value = self.data.get(column)
        if not isinstance(value, str) or not value.strip():
            raise self._bad(column, "a non-empty string")
        return value

    def optional_text(self, column: str) -> str | None:
        value = self.data.get(column)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self._bad(column, "a string")
        return value

    def integer(self, column: str) -> int:
        value = self.data.get(column)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._bad(column, "an integer")
        return value

    def uuid(self, column: str) -> str:
        value = self.data.get(column)
        try:
            return str(uuid.UUID(str(value))) if isinstance(value, str) else _raise()
        except ValueError:
            raise self._bad(column, "a UUID") from None

    def optional_uuid(self, column: str) -> str | None:
        return self.uuid(column) if self.has(column) else None

    def value(self, column: str) -> JsonValue:
        return self.data.get(column)

    def pick(self, *columns: str) -> dict[str, JsonValue]:
        """The columns present in the row (absent ones are left out, not nulled)."""
        return {column: self.data[column] for column in columns if column in self.data}

    def pick_as(self, column: str, read: Callable[[str], JsonValue]) -> dict[str, JsonValue]:
        """`{column: read(column)}` when the row carries the column, else `{}` (kept as is)."""
        return {column: read(column)} if column in self.data else {}


def _raise() -> str:
    raise ValueError("not a string")


def preview(text: str | None) -> str | None:
    """Canonical text as a graph property: bounded, since a node is not a document store."""
    if text is None:
        return None
    return text[:TEXT_PREVIEW_CHARACTERS]
