"""Byte ranges and entity tags over content-addressed bytes (api/ranges.py, RFC 9110)."""

from __future__ import annotations

import pytest

from hartonomous.api.ranges import (
    ByteRange,
    RangeNotSatisfiable,
    etag_of,
    matches_etag,
    requested_range,
)

TAG = etag_of("ab" * 32)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-0", ByteRange(0, 1, 10)),
        ("bytes=2-5", ByteRange(2, 6, 10)),
        ("bytes=2-", ByteRange(2, 10, 10)),
        ("bytes=-3", ByteRange(7, 10, 10)),
        ("bytes=-30", ByteRange(0, 10, 10)),
        ("bytes=8-100", ByteRange(8, 10, 10)),
        (" bytes = 1 - 2 ", ByteRange(1, 3, 10)),
    ],
)
def test_one_byte_range_is_read_and_clamped(header: str, expected: ByteRange) -> None:
    assert requested_range(header, None, TAG, 10) == expected


def test_content_range_names_the_last_byte_and_the_size() -> None:
    assert ByteRange(2, 6, 10).content_range == "bytes 2-5/10"


@pytest.mark.parametrize("header", ["bytes=10-", "bytes=10-20", "bytes=-0"])
def test_a_range_past_the_end_is_not_satisfiable(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable) as raised:
        requested_range(header, None, TAG, 10)
    assert raised.value.size == 10


def test_every_range_of_empty_content_is_not_satisfiable() -> None:
    for header in ("bytes=0-", "bytes=-1"):
        with pytest.raises(RangeNotSatisfiable):
            requested_range(header, None, TAG, 0)


@pytest.mark.parametrize(
    "header", [None, "bytes=5-2", "bytes=0-1,4-5", "items=0-1", "bytes=-", "bytes=a-b"]
)
def test_anything_but_one_well_formed_range_means_the_whole_content(header: str | None) -> None:
    assert requested_range(header, None, TAG, 10) is None


def test_if_range_for_another_tag_means_the_whole_content() -> None:
    assert requested_range("bytes=0-1", '"other"', TAG, 10) is None
    assert requested_range("bytes=0-1", TAG, TAG, 10) == ByteRange(0, 2, 10)


def test_if_none_match_compares_weakly_and_accepts_a_star() -> None:
    assert matches_etag(TAG, TAG)
    assert matches_etag(f'"x", W/{TAG}', TAG)
    assert matches_etag("*", TAG)
    assert not matches_etag('"x"', TAG)
    assert not matches_etag(None, TAG)
