"""The one sanitising boundary: what PostgreSQL cannot store is replaced visibly, never dropped."""

from __future__ import annotations

import json
import math
import os
from decimal import Decimal

import pytest

from hartonomous.storable import NotStorableError, loads_storable, storable_json, storable_text


def test_valid_text_is_unchanged() -> None:
    for value in ("plain", "café 日本語 😀", "tab\tand\nnewline", ""):
        assert storable_text(value) == value


def test_nul_becomes_the_replacement_character() -> None:
    assert storable_text("a\x00b\x00") == "a\ufffdb\ufffd"


def test_lone_surrogate_from_a_json_escape_is_escaped_visibly() -> None:
    name = json.loads('"w\\ud800"')
    assert storable_text(name) == "w\\ud800"
    assert storable_text(name).encode("utf-8") == b"w\\ud800"


def test_undecodable_file_name_bytes_are_shown_as_hex_escapes() -> None:
    name = os.fsdecode(b"caf\xe9-\xff.txt")
    assert storable_text(name) == "caf\\xe9-\\xff.txt"


def test_a_surrogate_pair_split_in_two_strings_is_kept_as_two_escapes() -> None:
    # Each half alone is a lone surrogate; neither is dropped.
    assert storable_text("\ud83d") + storable_text("\ude00") == "\\ud83d\\ude00"


def test_json_strings_keys_and_non_finite_numbers_become_storable() -> None:
    value = {
        "k\x00": ["v\ud800", 1.5, math.nan, math.inf, -math.inf, True, None, 3],
        "nested": ({"x": "\udce9"},),
    }
    assert storable_json(value) == {
        "k\ufffd": ["v\\ud800", 1.5, "NaN", "Infinity", "-Infinity", True, None, 3],
        "nested": [{"x": "\\xe9"}],
    }
    # What jsonb would receive encodes as UTF-8 and parses without NaN tokens.
    encoded = json.dumps(storable_json(value), ensure_ascii=False, allow_nan=False)
    encoded.encode("utf-8")


def test_a_value_json_cannot_hold_is_a_programming_error() -> None:
    with pytest.raises(TypeError, match="bytes"):
        storable_json({"raw": b"\x00"})


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b'{"data":{"v":NaN}}', "NaN (not a JSON number jsonb can store) at $.data.v"),
        (b"[Infinity]", "Infinity (not a JSON number jsonb can store) at $[0]"),
        (b'{"a":"x\\u0000"}', "U+0000 (NUL) in the string at $.a"),
        (b'{"\\u0000":1}', "U+0000 (NUL) in a key at $"),
        (b'["\\ud800"]', "a lone surrogate U+D800 in the string at $[0]"),
        (b"[" * 5000 + b"]" * 5000, "JSON nested deeper than the parser's recursion limit"),
        (b'"caf\xe9"', "not UTF-8 (invalid continuation byte at byte 4)"),
        (b"not json", "invalid JSON (Expecting value: line 1 column 1 (char 0))"),
    ],
)
def test_loads_storable_refuses_what_jsonb_would_refuse_naming_it(raw: bytes, problem: str) -> None:
    with pytest.raises(NotStorableError) as refused:
        loads_storable(raw)
    assert str(refused.value) == problem


def test_loads_storable_keeps_numbers_exact() -> None:
    assert loads_storable(b'{"a":[1,1.10,1e400]}') == {"a": [1, Decimal("1.10"), Decimal("1e400")]}
