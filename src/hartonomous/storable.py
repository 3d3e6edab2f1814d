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
from decimal import Decimal

from hartonomous.errors import HartonomousError
from hartonomous.json_types import JsonValue, exact_loads

# Why a JSON text nested deeper than Python's parser follows (its recursion limit) is refused.
TOO_DEEP = "JSON nested deeper than the parser's recursion limit"
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
    if isinstance(value, float | Decimal):
        if math.isnan(value):
            return "NaN"
        return value if _finite(value) else _NON_FINITE[float(value)]
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


class NotStorableError(HartonomousError, ValueError):
    """JSON text that PostgreSQL's ``jsonb`` cannot hold as it is; the message names why and
    where (``$`` is the document, ``$.data.v`` a member, ``$[2]`` an element)."""

    code = "not-storable-json"
    title = "JSON that cannot be stored"


def loads_storable(raw: bytes) -> JsonValue:
    """Parse ``raw`` (UTF-8 JSON text, numbers exact as `json_types.exact_loads` reads them)
    into a value that ``jsonb`` stores exactly as it came, refusing what it would change.

    Raises `NotStorableError` naming the problem for bytes that are not UTF-8, text that is
    not JSON, JSON nested deeper than the interpreter's recursion limit, and JSON that parses
    but holds what ``jsonb`` refuses: NaN or an infinity, U+0000, a lone surrogate (in a
    value or a key). The boundary where a message body from outside the database enters
    (docs/messaging.md, "Contract")."""
    try:
        text = raw.decode()
    except UnicodeDecodeError as exc:
        raise NotStorableError(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        value: JsonValue = exact_loads(text)
    except RecursionError:
        raise NotStorableError(TOO_DEEP) from None
    except ValueError as exc:
        raise NotStorableError(f"invalid JSON ({exc})") from None
    problem = _unstorable(value)
    if problem is not None:
        raise NotStorableError(problem)
    return value


def _unstorable(value: JsonValue) -> str | None:
    """What in ``value`` ``jsonb`` refuses, with its path; None when nothing. Walks without
    recursion (the value may be nested as deep as the parser allows)."""
    pending: list[tuple[str, JsonValue]] = [("$", value)]
    while pending:
        path, item = pending.pop()
        if isinstance(item, str):
            if _UNSTORABLE.search(item):
                return f"{_what(item)} in the string at {path}"
        elif isinstance(item, float | Decimal):
            if not _finite(item):
                return f"{storable_json(item)} (not a JSON number jsonb can store) at {path}"
        elif isinstance(item, dict):
            for key, member in reversed(list(item.items())):
                if _UNSTORABLE.search(key):
                    return f"{_what(key)} in a key at {path}"
                pending.append((f"{path}.{key}", member))
        elif isinstance(item, list):
            pending.extend(
                (f"{path}[{index}]", element) for index, element in reversed(list(enumerate(item)))
            )
    return None


def _finite(number: float | Decimal) -> bool:
    # A Decimal is never converted: 1e400 is finite as jsonb's numeric, infinite as a float.
    return number.is_finite() if isinstance(number, Decimal) else math.isfinite(number)


def _what(text: str) -> str:
    match = _UNSTORABLE.search(text)
    assert match is not None
    code = ord(match.group())
    return "U+0000 (NUL)" if code == 0 else f"a lone surrogate U+{code:04X}"
