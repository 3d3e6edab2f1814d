"""The JSON value type shared by every component that stores or emits JSON."""

from __future__ import annotations

from typing import TypeAlias

JsonValue: TypeAlias = "bool | int | float | str | list[JsonValue] | dict[str, JsonValue] | None"


def without_nul(value: object) -> object:
    """The value with NUL characters in its strings replaced by U+FFFD.

    PostgreSQL's text and jsonb cannot hold U+0000, but file metadata (a safetensors
    `__metadata__` value, a PDF's text) may contain it; the original bytes stay exact in atoms.
    """
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {without_nul(key): without_nul(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [without_nul(item) for item in value]
    return value
