"""The one boundary between strings the platform meets and what PostgreSQL can store.

PostgreSQL ``text`` and ``jsonb`` hold valid UTF-8 without U+0000, and ``jsonb`` has no NaN or
infinity. What files bring does not obey that: a safetensors header may hold ``"w\\ud800"`` (a
lone surrogate escape), a file name on Linux is bytes that need not be UTF-8 (Python hands them
over as U+DC80..U+DCFF, its ``surrogateescape`` code points), EXIF and PDF fields hold NULs.
Every such value is made storable here, visibly and without dropping anything:

- U+0000 becomes U+FFFD (the replacement character);
- an undecodable byte carried as U+DC80..U+DCFF becomes the four characters ``\\xNN``;
- any other lone surrogate becomes the six characters ``\\uDXXX``;
- in JSON, NaN and the infinities become the strings ``"NaN"``, ``"Infinity"`` and
  ``"-Infinity"``; keys are made storable like any other string.

The original bytes stay exact where they matter: in the atoms (file content) and, for a file
name, in the holding's percent-encoded ``file:`` URI (RFC 8089). See docs/ingest.md.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from hartonomous.json_types import JsonValue

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code == 0:
        return "\ufffd"
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"


def storable_text(value: str) -> str:
    """``value`` with NUL and lone surrogates replaced as the module docstring says."""
    if value.isascii() and "\x00" not in value:
        return value
    return _UNSTORABLE.sub(_visible, value)


def storable_json(value: object) -> JsonValue:
    """A JSON value (dicts, lists, tuples, scalars) that ``jsonb`` accepts as it is.

    Raises ``TypeError`` for a value JSON cannot represent (bytes, objects): that is a
    programming error, not bad input.
    """
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, bool | int) or value is None:
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        return _NON_FINITE.get(value, value)
    if isinstance(value, Mapping):
        return {storable_text(str(key)): storable_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [storable_json(item) for item in value]
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def storable_object(value: Mapping[str, object]) -> dict[str, JsonValue]:
    """``storable_json`` of a JSON object, typed as one."""
    stored = storable_json(value)
    assert isinstance(stored, dict)
    return stored
