"""The request-hygiene checks skip their full work for plain input (api/middleware.py): the
shortcut must refuse exactly what the full check refuses, with the same message."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hartonomous.api import middleware
from hartonomous.errors import UsageError

PATHS = [
    b"/v1/search",
    b"/v1/atoms/" + b"ab" * 32,
    b"/v1/atoms/.hidden",
    b"/v1/me/../me",
    b"/v1/me/./me",
    b"..",
    b"./v1",
    b"/v1/a%00b",
    b"/v1/%2e%2e/x",
    b"/v1/%2E/x",
    b"/v1/%ff%fe",
    b"/v1/a\x00b",
    b"/v1/" + b"y" * 1100,
    b"/v1/" + b"y" * 1020,
    b"/" + b"/".join([b"y" * 600] * 3),
    "/v1/caf\u00e9".encode(),
    b"/v1/caf\xe9",
]

QUERIES = [
    b"",
    b"limit=10&cursor=abc",
    b"q=a+b",
    b"cursor=a%00b",
    b"limit=%ff",
    b"a\x00b=1",
    "q=caf\u00e9".encode(),
    b"q=caf\xe9",
]

BODIES = [
    b'{"query": "a question", "k": 10}',
    b'{"name": "a\\u0000b"}',
    b'{"a\\u0000": 1}',
    b'{"name": "a\\\\u0000b"}',  # an escaped backslash, then "u0000": no NUL
    b'{"name": "\\u00000"}',
    b'{"name": "\xff"}',
    b'{"name": "a\x00b"}',  # a raw NUL: malformed JSON, left to FastAPI's 422
    b'{"name": ',
    b"[" * 99 + b"]" * 99,
    b"[" * 100 + b'"\\u0000"' + b"]" * 100,
    b"[" * 5000 + b"]" * 5000,
    b'{"a": [{"b": "\\u0000"}]}',
    b'{"k": 5, "k": 6}',
    b'{"a": [{"b": "\\u0000", "b": 1}]}',
]


def _outcome(check: Callable[[bytes], object], value: bytes) -> str | None:
    try:
        check(value)
    except UsageError as refused:
        return str(refused)
    return None


def _full_json_check(body: bytes) -> object:
    return middleware._checked_document(middleware._decoded(body, "the JSON body"))


@pytest.mark.parametrize("raw_path", PATHS)
def test_the_path_shortcut_refuses_what_the_full_check_refuses(raw_path: bytes) -> None:
    assert _outcome(middleware._check_path, raw_path) == _outcome(
        middleware._check_path_segments, raw_path
    )


@pytest.mark.parametrize("query", QUERIES)
def test_the_query_shortcut_refuses_what_the_full_check_refuses(query: bytes) -> None:
    assert _outcome(middleware._check_query, query) == _outcome(
        middleware._check_query_parameters, query
    )


@pytest.mark.parametrize("body", BODIES)
def test_the_json_shortcut_refuses_what_the_full_check_refuses(body: bytes) -> None:
    assert _outcome(middleware._checked_json, body) == _outcome(_full_json_check, body)


def test_the_inputs_cover_refusals_and_admissions() -> None:
    # Each list holds input both kinds of outcome, so the comparisons above can fail.
    for check, inputs in (
        (middleware._check_path_segments, PATHS),
        (middleware._check_query_parameters, QUERIES),
        (_full_json_check, BODIES),
    ):
        outcomes = {_outcome(check, value) is None for value in inputs}
        assert outcomes == {True, False}


def test_a_key_repeated_in_one_object_is_named_and_in_two_objects_is_not() -> None:
    assert _outcome(middleware._checked_json, b'{"a": {"a": 1}, "b": [{"a": 1}, {"a": 2}]}') is None
    assert _outcome(middleware._checked_json, b'{"a": {"b": [1, {"c": 1, "d": 2, "c": 3}]}}') == (
        "the body is not valid JSON: duplicate key 'c' in body.a.b.1 at character 33"
    )
