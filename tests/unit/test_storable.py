"""The one sanitising boundary: what PostgreSQL cannot store is replaced visibly, never dropped."""

from __future__ import annotations

import json
import math
import os

import pytest

from hartonomous.storable import storable_json, storable_text


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
