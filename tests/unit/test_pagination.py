"""Signed cursors: a round trip works; any change, or another listing's cursor, is refused."""

from __future__ import annotations

import pytest

from hartonomous.errors import InvalidCursorError
from hartonomous.services.pagination import CursorCodec

CODEC = CursorCodec(b"k" * 32)


def test_a_cursor_round_trips_its_position() -> None:
    cursor = CODEC.encode("holdings", "acme", ["2026-11-30T12:00:00+00:00", 42])
    assert CODEC.decode("holdings", "acme", cursor) == ["2026-11-30T12:00:00+00:00", 42]


@pytest.mark.parametrize(
    "tamper",
    [
        lambda c: c[:-1] + ("A" if c[-1] != "A" else "B"),  # signature changed
        lambda c: ("e" if c[0] != "e" else "f") + c[1:],  # payload changed
        lambda c: c.split(".")[0],  # signature dropped
        lambda c: "not base64!",
        lambda c: "é" + c,
        lambda c: "",
        lambda c: c * 100,
    ],
)
def test_a_tampered_cursor_is_refused(tamper) -> None:  # type: ignore[no-untyped-def]
    cursor = CODEC.encode("holdings", "acme", [1])
    with pytest.raises(InvalidCursorError):
        CODEC.decode("holdings", "acme", tamper(cursor))


def test_a_cursor_from_another_listing_tenant_or_key_is_refused() -> None:
    cursor = CODEC.encode("holdings", "acme", [1])
    with pytest.raises(InvalidCursorError, match="another listing"):
        CODEC.decode("ledger", "acme", cursor)
    with pytest.raises(InvalidCursorError, match="another tenant's holdings listing"):
        CODEC.decode("holdings", "globex", cursor)
    with pytest.raises(InvalidCursorError, match="altered"):
        CursorCodec(b"x" * 32).decode("holdings", "acme", cursor)
